"""Label operations on the semi-supervised models (M2, CCVAE, JDVAE, CVQVAE; Zou thesis §5.3-5.4 and
§6.4, digest C.4 and D.5):

- :func:`swap`: for a face I_g with the label (y = 1) and a face I_w without (y = 0), exchange the
  label parts, (y, u) for JDVAE (§5.4), y for M2, z_c for CCVAE, (y, c) for CVQVAE (§6.4: decode
  D(z_0, c_1, y = 1) and D(z_1, c_0, y = 0), its decoder gating c by the new y): decode
  d(1, z_w, u_g) and d(0, z_g, u_w). Labels are the true ones when given (as in Ch. 6), else y = argmax q(y|x).
- :func:`flip`: set y to 1 - y, the label features to the mean of their prior given the new label
  (for CVQVAE, whose c has no prior, the mean of the c it fitted to the labelled faces of that label).
- :func:`magnitude`: decode d(y, z, lambda u) for lambda in [0, 2] (§6.4, "Magnitude").
- :func:`interpolate_features`: decode d(y_1, z_1, u_1 + alpha (u_2 - u_1)) (§6.4, "Interpolation").
- :func:`swap_scores_of`: SR(+), SR(-), SR and CFD of the swaps with :func:`mien.metrics.swap.swap_scores`.
- :func:`label_scores`: the columns of Tab. 5.1 / 6.2 on real world faces with their factors,
  plus the distances of each swap to its exact target, the world's re-render of the face with
  the other face's label and features (:func:`mien.data.world.labels.swapped_factors`).

Each takes images (B x C x H x W) and works pair by pair (row i of ``a`` with row i of ``b``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from mien.data.world.labels import LABEL_FEATURES, renderable, swapped_factors
from mien.data.world.render import render
from mien.errors import ConfigError, DataError
from mien.metrics.fid import fid_from_features, image_features
from mien.metrics.swap import bca, classifier_accuracy, exact_swap_distances, label_probe_bca, swap_scores

LAMBDA_RANGE = (0.0, 2.0)


def _check_model(model):
    if not hasattr(model, "label_parts") or not hasattr(model, "encode_parts"):
        raise ConfigError(f"{getattr(model, 'model_name', type(model).__name__)} has no labels to swap; "
                          "use a checkpoint of m2, ccvae, jdvae or cvqvae")


def label_index(model, label: str | int | None) -> int:
    """The position of ``label`` among the model's labels (the first when None)."""
    _check_model(model)
    names = list(model.config.labels)
    if label is None:
        return 0
    if isinstance(label, str) and label in names:
        return names.index(label)
    if isinstance(label, int) and 0 <= label < len(names):
        return label
    raise ConfigError(f"{model.model_name} has no label {label!r}; its labels are {', '.join(names)}")


def labels_of(model, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """B x L labels: ``y`` (true labels) when given, else argmax q(y|x)."""
    if y is None:
        return model.predict(x)
    y = torch.as_tensor(y, dtype=torch.float32, device=x.device)
    y = y[:, None] if y.dim() == 1 else y
    if y.shape != (len(x), model.n_labels):
        raise ConfigError(f"labels must be B x {model.n_labels} (one 0/1 per label and face), got {tuple(y.shape)}")
    return y


def face_and_labels(spec: str, ckpt, seed: int, size: int, labels: list[str], align: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``spec`` as (1 x 3 x S x S image, its true labels 1 x L or None): a world face by index
    (labels from the world), or an image file (no labels: the model predicts them)."""
    from mien.data.photo import load_face
    from mien.models.checkpoint import training_world

    if spec.isdigit():
        batch = training_world(ckpt, int(spec) + 1, seed, size).batch([int(spec)])
        missing = [n for n in labels if n not in batch["factors"]]
        if missing:
            raise ConfigError(f"the checkpoint's world has no label {missing[0]!r}; retrain with data.labels=[{missing[0]}]")
        return batch["image"], torch.stack([batch["factors"][n].float() for n in labels], 1)
    if not Path(spec).is_file():
        raise ConfigError(f"{spec!r} is neither a world face index nor an image file; pass e.g. 3 or face.png")
    return load_face(Path(spec), size, align=align)["image"][None], None


def _encode(model, x, y):
    parts = model.encode_parts(x, y)
    parts.setdefault("y", y)  # CCVAE's latent has no y; keep the labels beside its parts
    return parts


@torch.no_grad()
def swap(model, a: torch.Tensor, b: torch.Tensor, label: str | int | None = None, y_a=None, y_b=None) -> dict:
    """Exchange the label parts of ``label`` between faces a and b, which must differ in it.

    Returns ``a`` (face a with b's label and features), ``b`` (face b with a's), the
    reconstructions ``a_rec`` and ``b_rec``, and the labels ``y_a`` and ``y_b`` used."""
    l = label_index(model, label)
    ya, yb = labels_of(model, a, y_a), labels_of(model, b, y_b)
    same = ya[:, l] == yb[:, l]
    if same.any():
        name = model.config.labels[l]
        i = int(same.nonzero()[0])
        raise ConfigError(f"faces a and b of pair {i} both have {name} = {int(ya[i, l])}; a swap needs one face "
                          f"with {name} and one without (pick another face)")
    pa, pb = _encode(model, a, ya), _encode(model, b, yb)
    sa, sb = {k: v.clone() for k, v in pa.items()}, {k: v.clone() for k, v in pb.items()}
    for part in model.label_parts:
        sa[part][:, l], sb[part][:, l] = pb[part][:, l], pa[part][:, l]
    return {"a": model.decode_parts(sa), "b": model.decode_parts(sb), "a_rec": model.decode_parts(pa),
            "b_rec": model.decode_parts(pb), "y_a": ya, "y_b": yb}


@torch.no_grad()
def flip(model, x: torch.Tensor, label: str | int | None = None, y=None) -> torch.Tensor:
    """Decode x with ``label`` flipped (y -> 1 - y) and its features at the mean of p(u | 1 - y)."""
    l = label_index(model, label)
    y = labels_of(model, x, y)
    parts = _encode(model, x, y)
    y_new = 1 - y[:, l]
    parts = model.flip_features(parts, l, y_new)
    parts["y"] = parts["y"].clone()
    parts["y"][:, l] = y_new
    return model.decode_parts(parts)


@torch.no_grad()
def magnitude(model, x: torch.Tensor, lambdas, label: str | int | None = None, y=None) -> torch.Tensor:
    """d(y, z, lambda u) for each lambda in [0, 2] (Zou §6.4: lambda = 0 with y = 1 gives no glasses
    under a feature-gated decoder): len(lambdas) x B x C x H x W."""
    l = label_index(model, label)
    feature_part(model)
    lambdas = [float(v) for v in lambdas]
    bad = [v for v in lambdas if not LAMBDA_RANGE[0] <= v <= LAMBDA_RANGE[1]]
    if bad:
        raise ConfigError(f"magnitude lambda {bad[0]} lies outside [0, 2]; choose values in [0, 2]")
    parts = _encode(model, x, labels_of(model, x, y))
    out = []
    for v in lambdas:
        scaled = {k: t.clone() for k, t in parts.items()}
        scaled[model.feature_part][:, l] = v * parts[model.feature_part][:, l]
        out.append(model.decode_parts(scaled))
    return torch.stack(out)


def feature_part(model, name: str = "c") -> str:
    """The model's label-feature part for ``name``: ``c`` (any model's label features, the
    thesis's name in ch. 6) or the part's own name (``u`` for JDVAE, ``zc`` for CCVAE)."""
    _check_model(model)
    part = model.feature_part
    if part is None:
        raise ConfigError(f"{model.model_name} has no label features to scale; use jdvae, ccvae or cvqvae")
    if name not in ("c", part):
        raise ConfigError(f"{model.model_name} has no label features {name!r}; use --feature c (or {part})")
    return part


@torch.no_grad()
def interpolate_features(model, x1: torch.Tensor, x2: torch.Tensor, alphas, label: str | int | None = None,
                         y1=None, y2=None) -> torch.Tensor:
    """d(y_1, z_1, c_1 + alpha (c_2 - c_1)) for each alpha (Zou §6.4): face 1 keeps its label and
    the rest of its code while its label features move towards face 2's; len(alphas) x B x C x H x W."""
    l = label_index(model, label)
    part = feature_part(model)
    p1 = _encode(model, x1, labels_of(model, x1, y1))
    c2 = _encode(model, x2, labels_of(model, x2, y2))[part][:, l]
    out = []
    for a in (float(v) for v in alphas):
        moved = {k: t.clone() for k, t in p1.items()}
        moved[part][:, l] = p1[part][:, l] + a * (c2 - p1[part][:, l])
        out.append(model.decode_parts(moved))
    return torch.stack(out)


def swap_scores_of(model, with_label: torch.Tensor, without_label: torch.Tensor, label: str | int | None = None,
                   y_with=None, y_without=None, attribute: str | None = None, evaluator=None) -> dict:
    """Swap each face with the label (y = 1) against one without (y = 0) and score the results
    (Zou §5.4, §6.5): SR(+) on the faces that gained the label, SR(-) on those that lost it, CFD
    of each against the original that shares its label features (:func:`mien.metrics.swap.swap_scores`,
    scored by mien's evaluator for the attribute, by default the label's name)."""
    l = label_index(model, label)
    out = swap(model, with_label, without_label, l, y_with, y_without)
    if not (out["y_a"][:, l] == 1).all():
        raise ConfigError("the first faces must carry the label (y = 1) and the second ones not (y = 0); swap the arguments")
    return swap_scores(out["b"], with_label, out["a"], without_label, attribute or model.config.labels[l], evaluator)


def _chunked(fn, *tensors, size: int = 250):
    """``fn`` over row chunks of ``tensors``; its outputs (tensors or dicts of them) concatenated."""
    outs = [fn(*(t[i:i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)]
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


def exact_targets(name: str, fa: dict, fb: dict, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The world's renders of face a with b's ``name`` and features, and of face b with a's."""
    ta, tb = swapped_factors(name, fa, fb)
    return render(ta, size)[0], render(tb, size)[0]


@torch.no_grad()
def label_swaps(model, images: torch.Tensor, factors: dict, label: str | int | None = None) -> dict:
    """The swaps of ``label`` on real faces with their true labels (Zou §5.4, §6.4): the first
    faces with the label (``index_a``) paired in order with the first without (``index_b``), as
    many pairs as the smaller group. ``a``: the faces a with b's label and features, ``b``: the
    faces b with a's; when ``factors`` hold every world factor, their exact targets ``target_a``
    and ``target_b`` (the world's re-renders)."""
    l = label_index(model, label)
    name = model.config.labels[l]
    missing = [n for n in model.config.labels if n not in factors]
    if missing:
        raise ConfigError(f"the scored data has no label {missing[0]!r}; score world faces of the checkpoint's data")
    y = torch.stack([torch.as_tensor(factors[n]).float() for n in model.config.labels], 1)
    pos, neg = (y[:, l] == 1).nonzero()[:, 0], (y[:, l] == 0).nonzero()[:, 0]
    k = min(len(pos), len(neg))
    if k == 0:
        raise DataError(f"the scored faces all have {name} = {int(y[0, l])}; score more faces (--n) to find both values")
    ia, ib = pos[:k], neg[:k]
    dev = model.device
    out = _chunked(lambda a, b, ya, yb: {k: v.cpu() for k, v in swap(model, a.to(dev), b.to(dev), l, ya, yb).items()},
                   images[ia], images[ib], y[ia], y[ib])
    result = {"index_a": ia, "index_b": ib, "a": out["a"], "b": out["b"], "y": y[:, l], "labels": y}
    if name in LABEL_FEATURES and renderable(factors):
        result["target_a"], result["target_b"] = exact_targets(name, {n: v[ia] for n, v in factors.items()},
                                                               {n: v[ib] for n, v in factors.items()}, images.shape[-1])
    return result


@torch.no_grad()
def label_scores(model, images: torch.Tensor, factors: dict, label: str | int | None = None, evaluator=None) -> dict:
    """Tab. 5.1 / 6.1 / 6.2 scores of ``label`` on real faces with their true labels (Zou §5.4,
    §6.5), on the pairs of :func:`label_swaps`: ``sr_plus``, ``sr_minus``, ``sr``, ``cfd``,
    ``swap_fid_mien`` (Fréchet distance of the swaps to the real faces on evaluator features, the
    thesis's FID), ``bca`` of argmax q(y|x) on every face, ``scoring_classifier_acc`` of the
    scoring classifier on the real faces, ``pairs``, and on world faces ``exact_lpips`` and
    ``exact_feature`` of both swap directions to their exact targets
    (:func:`mien.metrics.swap.exact_swap_distances`), and ``z_label_bca``: how well a linear probe
    reads the label back from z, the label-free part of q(.|x, y) (50 % when z keeps none of it)."""
    l = label_index(model, label)
    name = model.config.labels[l]
    s = label_swaps(model, images, factors, l)
    ia, ib = s["index_a"], s["index_b"]
    scores = swap_scores(s["b"], images[ia], s["a"], images[ib], name, evaluator)
    swapped = torch.cat([s["a"], s["b"]]).clamp(-1, 1)
    ev = evaluator
    scores["swap_fid_mien"] = fid_from_features(image_features(swapped, ev), image_features(images, ev))
    pred = _chunked(lambda x: model.predict(x.to(model.device)).cpu(), images)[:, l]
    scores["bca"] = bca(s["y"].numpy(), pred.numpy())
    scores["scoring_classifier_acc"] = classifier_accuracy(images, s["y"], name, evaluator)
    z = _chunked(lambda x, y: _encode(model, x.to(model.device), y.to(model.device))["z"].flatten(1).cpu(),
                 images, s["labels"])
    scores["z_label_bca"] = label_probe_bca(z.numpy(), s["y"].numpy())
    if "target_a" in s:
        scores.update(exact_swap_distances(swapped, torch.cat([s["target_a"], s["target_b"]]), evaluator))
    scores["pairs"] = float(len(ia))
    return scores
