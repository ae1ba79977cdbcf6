"""mien's evaluator networks, trained on the world and shipped with the package (design.md,
Conventions: no pretrained network is downloaded): the image evaluator CNN (expression,
intensity, attributes, pose, landmarks, identity; features for fid_mien/lpips_mien/csim_mien)
and the landmark-sequence classifier of Zou §3.6. Both are model families trained by the engine
(``mien evaluator train``)."""

from mien.evaluator.network import ATTRIBUTES, Evaluator, EvaluatorConfig
from mien.evaluator.sequence import SequenceClassifier, SequenceClassifierConfig
from mien.evaluator.weights import evaluator_for, load_evaluator, load_sequence_classifier

__all__ = ["Evaluator", "EvaluatorConfig", "SequenceClassifier", "SequenceClassifierConfig", "ATTRIBUTES",
           "evaluator_for", "load_evaluator", "load_sequence_classifier"]
