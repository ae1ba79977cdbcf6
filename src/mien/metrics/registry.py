"""The metric registry used by ``mien eval``: name -> function and what it needs.

Needs (the arguments the function receives):

- ``distribution``: generated and reference evaluator features, their evaluator classes and the
  evaluator's class names;
- ``pairs``: reference images, the images to compare with them (same order) and the evaluator;
- ``targets``: images, the batch whose labels, attributes or landmarks (``keys``) they should
  show, and the evaluator (one fine-tuned on real data reads the labels by its name map);
- ``codes``: codes N x D, the factor values of the items and the factor schema;
- ``sequences``: generated and reference sequence batches (``sequence``, ``length``, ``label``);
- ``labels``: a label model (M2, CCVAE, JDVAE, ...), the scored real images, their factors and the
  evaluator;
- ``generator``: a StyleGAN-family model (mapping and synthesis), the evaluator, the number of
  pairs (the number of scored items), the seed and a progress callback.

Metrics with ``in_all=False`` (aliases, more PPL variants) run only when named.

Every function returns a dict of named floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mien.errors import ConfigError
from mien.metrics import disentangle as dis
from mien.metrics import fid, image, ppl, pr, sequence


@dataclass(frozen=True)
class Metric:
    name: str
    needs: str
    fn: Callable[..., dict]
    help: str
    keys: tuple[str, ...] = ()  # batch keys a ``targets`` metric reads
    in_all: bool = True  # part of ``--metrics all``


def _per_class(gf, rf, gc, rc, names) -> dict:
    out = {}
    for c, scores in pr.precision_recall_per_class(gf, gc, rf, rc).items():
        out.update({f"{k}_{names[c] if c < len(names) else c}": v for k, v in scores.items()})
    return out


def _data_targets(x, b, ev) -> dict | None:
    """The batch's labels in the evaluator's terms when it was fine-tuned on real data, else None."""
    config = getattr(ev, "config", None)
    return ev.data_targets({**b, "image": x}) if getattr(config, "labels", "world") == "data" else None


def _expr_acc(x, b, ev) -> dict:
    t = _data_targets(x, b, ev)
    if t is None:
        return {"expression_acc": image.expression_accuracy(x, b["label"], ev)}
    known = t["expression"] >= 0 if "expression" in t else None
    if known is None or not known.any():
        return {}
    return {"expression_acc": image.expression_accuracy(x[known], t["expression"][known], ev)}


def _attr_acc(x, b, ev) -> dict:
    t = _data_targets(x, b, ev)
    if t is not None:
        return {"attribute_acc": image.attribute_accuracy(x, t["attributes"], ev)} if "attributes" in t else {}
    if b["attributes"].shape[1] != 4:
        raise ConfigError(f"the data has {b['attributes'].shape[1]} binary attributes, the evaluator scores sex, "
                          "glasses, beard and hat: fine-tune one on it (mien evaluator train --data) and pass --evaluator")
    return {"attribute_acc": image.attribute_accuracy(x, b["attributes"], ev)}


def _swap(model, images, factors, ev) -> dict:
    """:func:`mien.control.swap.label_scores` of each label (keys prefixed by the label's name
    when the model has several)."""
    from mien.control.swap import label_scores

    names = model.config.labels
    out = {}
    for name in names:
        scores = label_scores(model, images, factors, name, ev)
        out.update({(k if len(names) == 1 else f"{name}_{k}"): v for k, v in scores.items()})
    return out


def _kid(gf, rf, gc, rc, names) -> dict:
    mean, std = fid.kid_from_features(gf, rf)
    return {"kid_mien": mean, "kid_mien_std": std}


def _one_of_pr(key: str, gf, rf) -> dict:
    return {key: pr.precision_recall(gf, rf)[key]}


def _ppl(space: str, sampling: str):
    def fn(model, evaluator, n, seed, progress=None) -> dict:
        value = ppl.perceptual_path_length(model, n, space, sampling, evaluator=evaluator, seed=seed, progress=progress)
        return {f"ppl_{space}_{sampling}": value}
    return fn


def _ppl_end(model, evaluator, n, seed, progress=None) -> dict:
    out = _ppl("w", "end")(model, evaluator, n, seed, progress)
    if progress:
        progress(0, more=n)  # the second space's pairs
    return {**out, **_ppl("z", "end")(model, evaluator, n, seed, progress)}


_ALL = [
    Metric("fid", "distribution", lambda gf, rf, gc, rc, names: {"fid_mien": fid.fid_from_features(gf, rf)},
           "Fréchet distance on evaluator features"),
    Metric("kid", "distribution", _kid, "kernel distance (unbiased MMD^2, cubic kernel) on evaluator features"),
    Metric("pr", "distribution", lambda gf, rf, gc, rc, names: pr.precision_recall(gf, rf),
           "k-NN precision, recall, density, coverage"),
    Metric("precision", "distribution", lambda gf, rf, gc, rc, names: _one_of_pr("precision", gf, rf),
           "k-NN precision (the fraction of samples inside the data's manifold; also in pr)", in_all=False),
    Metric("recall", "distribution", lambda gf, rf, gc, rc, names: _one_of_pr("recall", gf, rf),
           "k-NN recall (the fraction of data inside the samples' manifold; also in pr)", in_all=False),
    Metric("pr_class", "distribution", _per_class, "precision/recall/density/coverage per evaluator expression class"),
    Metric("ppl", "generator", _ppl("w", "full"),
           "perceptual path length in W (lerp, t ~ U(0, 1), eps 1e-4, lpips_mien, 1st-99th percentile filter)"),
    Metric("ppl_z", "generator", _ppl("z", "full"), "perceptual path length in Z (slerp through the mapping)",
           in_all=False),
    Metric("ppl_end", "generator", _ppl_end, "perceptual path length at the path ends, in W and in Z", in_all=False),
    Metric("psnr", "pairs", lambda a, b, ev: {"psnr": image.psnr(a, b)}, "PSNR (dB) of each image to its reference"),
    Metric("ssim", "pairs", lambda a, b, ev: {"ssim": image.ssim(a, b)}, "SSIM of each image to its reference"),
    Metric("lpips", "pairs", lambda a, b, ev: {"lpips_mien": image.lpips_mien(a, b, ev)},
           "LPIPS formula on evaluator features"),
    Metric("csim", "pairs", lambda a, b, ev: {"csim_mien": image.csim_mien(a, b, ev)}, "identity cosine similarity"),
    Metric("expr_acc", "targets", _expr_acc,
           "evaluator expression accuracy w.r.t. the intended labels", ("label",)),
    Metric("attr_acc", "targets", _attr_acc,
           "evaluator attribute accuracy w.r.t. the intended attributes (sex, glasses, beard, hat)", ("attributes",)),
    Metric("nme", "targets", lambda x, b, ev: {"landmark_nme": image.image_landmark_nme(x, b["landmarks2d"], ev)},
           "landmark NME (inter-ocular) of the evaluator's landmarks w.r.t. the intended ones", ("landmarks2d",)),
    Metric("swap", "labels", _swap,
           "label swaps scored with true labels: SR(+), SR(-), SR, CFD, BCA of q(y|x), the scoring classifier's "
           "accuracy on the real faces, and on world data the lpips_mien and feature distances to the exact swaps",
           ("factors",)),
    Metric("beta_vae", "codes", lambda z, f, s: {"beta_vae": dis.beta_vae_score(z, f, s)}, "BetaVAE score"),
    Metric("factor_vae", "codes", lambda z, f, s: {"factor_vae": dis.factor_vae_score(z, f, s)}, "FactorVAE score"),
    Metric("mig", "codes", lambda z, f, s: {"mig": dis.mig(z, f, s)}, "mutual information gap"),
    Metric("sap", "codes", lambda z, f, s: {"sap": dis.sap(z, f, s)}, "separated attribute predictability"),
    Metric("dci", "codes", lambda z, f, s: {f"dci_{k}": v for k, v in dis.dci(z, f, s).items()},
           "DCI disentanglement, completeness, informativeness"),
    Metric("modularity", "codes", lambda z, f, s: {"modularity": dis.modularity(z, f, s)}, "modularity"),
    Metric("explicitness", "codes", lambda z, f, s: {"explicitness": dis.explicitness(z, f, s)}, "explicitness"),
    Metric("seq_acc", "sequences",
           lambda g, r: {"seq_acc": sequence.sequence_accuracy(g["sequence"], g["label"], g.get("length"))},
           "sequence classifier accuracy w.r.t. the conditioning labels"),
    Metric("seq_fd", "sequences",
           lambda g, r: {"seq_fd": sequence.sequence_fd(g["sequence"], r["sequence"], g.get("length"), r.get("length"))},
           "Fréchet distance on the sequence classifier's linear layer"),
]
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def resolve(names: str, allowed_needs: set[str], batch_keys=None) -> list[Metric]:
    """Metrics named in a comma-separated list ('all': every metric whose needs are allowed and
    whose batch ``keys`` are among ``batch_keys`` when given)."""
    def fits(m: Metric) -> bool:
        return m.needs in allowed_needs and (batch_keys is None or set(m.keys) <= set(batch_keys))

    if names.strip() == "all":
        return [m for m in _ALL if m.in_all and fits(m)]
    out = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in METRICS:
            raise ConfigError(f"unknown metric {name!r}; choose from {', '.join(METRICS)} or 'all'")
        m = METRICS[name]
        if not fits(m):
            what = m.needs if m.needs not in allowed_needs else f"the data's {', '.join(m.keys)}"
            raise ConfigError(f"metric {name!r} needs {what}, which this input cannot give "
                              f"(it gives: {', '.join(sorted(allowed_needs)) or 'nothing'})")
        out.append(m)
    if not out:
        raise ConfigError("no metric given; pass --metrics fid,kid,... or all")
    return out
