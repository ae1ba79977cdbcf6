"""Metrics of generated landmark sequences (Zou thesis §3.6, digest E): accuracy of the
independent LSTM classifier w.r.t. the conditioning labels, the Fréchet distance on the output of
its linear layer, and the per-landmark (per-vertex) Euclidean error (Tab. 3.5: mean +- std)."""

from __future__ import annotations

import torch

from mien.errors import DataError
from mien.metrics.fid import fid_from_features


def _classifier(classifier):
    if classifier is not None:
        return classifier
    from mien.evaluator import load_sequence_classifier

    return load_sequence_classifier()


@torch.no_grad()
def sequence_logits(sequences, lengths=None, classifier=None, batch_size: int = 256) -> torch.Tensor:
    """Output of the classifier's linear layer (N x classes) for sequences N x F x 68 x 3."""
    clf = _classifier(classifier)
    seq = torch.as_tensor(sequences).float()
    if not torch.isfinite(seq).all():
        raise DataError("sequences contain NaN or infinite values; check the model")
    lengths = torch.full((len(seq),), seq.shape[1]) if lengths is None else torch.as_tensor(lengths)
    return torch.cat([clf(seq[i:i + batch_size], lengths[i:i + batch_size]) for i in range(0, len(seq), batch_size)])


def sequence_accuracy(sequences, labels, lengths=None, classifier=None) -> float:
    """Share of sequences that the classifier assigns to their (conditioning) label."""
    pred = sequence_logits(sequences, lengths, classifier).argmax(1)
    return (pred == torch.as_tensor(labels)).float().mean().item()


def sequence_fd(gen, ref, gen_lengths=None, ref_lengths=None, classifier=None) -> float:
    """Fréchet distance (Zou Eq. 2.38) between the classifier's linear-layer outputs of two sets."""
    return fid_from_features(sequence_logits(gen, gen_lengths, classifier), sequence_logits(ref, ref_lengths, classifier))


def landmark_error(pred, target, mask=None) -> dict:
    """Euclidean error per landmark (or vertex) of B x F x N x 3 (or B x N x 3) predictions:
    ``mean`` and ``std`` over all points (Zou Tab. 3.5), and ``per_landmark`` (N values).
    ``mask`` (B x F, True on real frames) leaves padding out."""
    p, t = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    if p.shape != t.shape or p.shape[-1] not in (2, 3):
        raise DataError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} must have one shape ... x N x 2|3")
    err = (p - t).norm(dim=-1)
    if mask is not None:
        err = err[torch.as_tensor(mask, dtype=torch.bool)]
    err = err.reshape(-1, err.shape[-1])
    return {"mean": err.mean().item(), "std": err.std().item(), "per_landmark": err.mean(0).tolist()}
