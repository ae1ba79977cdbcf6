"""Scoring a checkpoint or two image folders with the registry's metrics (what ``mien eval``
runs). Images go through in batches; features, codes and per-batch means are gathered, then
every metric is computed once."""

from __future__ import annotations

from itertools import chain
from typing import Iterable, Iterator

import torch
from torch.utils.data import default_collate

from mien.errors import ConfigError
from mien.metrics.fid import fid_from_features, image_features, kid_from_features
from mien.metrics.ppl import StyleGenerator
from mien.metrics.registry import Metric, resolve
from mien.models.capabilities import Autoencoder, LabelModel, Reconstructor, Sampler


def dataset_batches(ds, n: int, batch_size: int) -> Iterator[dict]:
    """The first ``n`` items of a data set as collated batches (world data sets render whole batches)."""
    if n > len(ds):
        raise ConfigError(f"the data has {len(ds)} items; lower --n to at most {len(ds)}")
    for start in range(0, n, batch_size):
        idx = range(start, min(start + batch_size, n))
        yield ds.batch(idx) if hasattr(ds, "batch") else default_collate([ds[i] for i in idx])


class _Mean:
    """Running means of named floats, weighted by batch size."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, values: dict, n: int):
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
            self.counts[k] = self.counts.get(k, 0) + n

    def result(self) -> dict:
        return {k: v / self.counts[k] for k, v in self.sums.items()}


def _classes(evaluator, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return evaluator(images)["expression"].argmax(1)


def _distribution(chosen: list[Metric], gen: list, ref: list, names: tuple[str, ...]) -> dict:
    gf, gc = torch.cat([g[0] for g in gen]), torch.cat([g[1] for g in gen])
    rf, rc = torch.cat([r[0] for r in ref]), torch.cat([r[1] for r in ref])
    out = {}
    for m in chosen:
        if m.needs == "distribution":
            out.update(m.fn(gf, rf, gc, rc, names))
    return out


def _pairwise(chosen: list[Metric], mean: _Mean, ref: torch.Tensor, other: torch.Tensor, batch: dict | None,
              evaluator):
    for m in chosen:
        if m.needs == "pairs":
            mean.add(m.fn(ref, other, evaluator), len(ref))
        elif m.needs == "targets" and batch is not None:
            mean.add(m.fn(other, batch, evaluator), len(ref))


@torch.no_grad()
def evaluate_model(model, batches: Iterable[dict], names: str, evaluator, schema=None, seed: int = 0,
                   progress=None) -> dict:
    """Metrics of a generative model on data ``batches`` (collated sample dicts): distribution
    metrics compare samples with the data, pairwise and target metrics compare reconstructions
    with their inputs, representation metrics score vector codes of ``encode`` against the
    batches' factors, label metrics swap the labels of a label model's real faces (SR, CFD,
    BCA, exact-swap distances), generator metrics (PPL) use as many latent pairs as there are data items.
    With ``names='all'``, whatever applies to the model and the data. ``progress(n, more=0)``
    advances a bar by n items (``more``: items added to its total)."""
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise ConfigError("no data to score")
    allowed = {"distribution"} if isinstance(model, Sampler) else set()
    if isinstance(model, StyleGenerator):
        allowed.add("generator")
    if isinstance(model, Reconstructor):
        allowed |= {"pairs", "targets"}
    if isinstance(model, LabelModel):
        allowed.add("labels")
    if isinstance(model, Autoencoder) and schema and "factors" in first:
        if model.encode(first["image"][:2].float()).dim() == 2 or names.strip() != "all":
            allowed.add("codes")
    chosen = resolve(names, allowed, first.keys())
    needs = {m.needs for m in chosen}
    gen, ref, codes, factors, real, mean, items = [], [], [], [], [], _Mean(), 0
    generator = torch.Generator().manual_seed(seed)
    for batch in chain([first], batches):
        x = batch["image"].float()
        items += len(x)
        if "distribution" in needs:
            ref.append((image_features(x, evaluator), _classes(evaluator, x)))
            s = model.sample(len(x), generator=generator)["image"].clamp(-1, 1)
            gen.append((image_features(s, evaluator), _classes(evaluator, s)))
        if needs & {"pairs", "targets"}:
            _pairwise(chosen, mean, x, model.reconstruct(x).clamp(-1, 1), batch, evaluator)
        if "labels" in needs:
            real.append((x, batch["factors"]))
        if "codes" in needs:
            z = model.encode(x)
            if z.dim() != 2:
                raise ConfigError(f"{type(model).__name__} codes are {tuple(z.shape[1:])} maps, not vectors; "
                                  "the disentanglement metrics need vector codes (leave them out of --metrics)")
            codes.append(z)
            factors.append(batch["factors"])
        if progress:
            progress(len(x))
    out = _distribution(chosen, gen, ref, evaluator.expression_names) if gen else {}
    out.update(mean.result())
    if codes:
        z = torch.cat(codes).numpy()
        f = {k: torch.cat([b[k] for b in factors]).numpy() for k in factors[0]}
        for m in chosen:
            if m.needs == "codes":
                out.update(m.fn(z, f, schema))
    if real:
        images = torch.cat([r[0] for r in real])
        f = {k: torch.cat([r[1][k] for r in real]) for k in real[0][1]}
        for m in chosen:
            if m.needs == "labels":
                out.update(m.fn(model, images, f, evaluator))
    for m in chosen:
        if m.needs == "generator":
            if progress:
                progress(0, more=items)
            out.update(m.fn(model, evaluator, items, seed, progress))
    return out


@torch.no_grad()
def evaluate_images(gen_batches: Iterable[dict], ref_batches: Iterable[dict], names: str, evaluator,
                    paired: bool, progress=None, features=None) -> dict:
    """Metrics of a folder of images against a reference folder; pairwise metrics need ``paired``
    folders (the same number of images, matched in file order). ``features`` (a
    :class:`~mien.metrics.fid.ScriptedFeatures`) adds ``fid_features`` and ``kid_features``
    (for fid and kid) on the user's feature network."""
    chosen = resolve(names, {"distribution", "pairs"} if paired else {"distribution"})
    gen, ref, mean = [], [], _Mean()
    user = {"gen": [], "ref": []}
    steps = zip(gen_batches, ref_batches) if paired else chain(((g, None) for g in gen_batches),
                                                                 ((None, r) for r in ref_batches))
    for g, r in steps:
        for b, store, side in ((g, gen, "gen"), (r, ref, "ref")):
            if b is not None:
                store.append((image_features(b["image"].float(), evaluator), _classes(evaluator, b["image"].float())))
                if features is not None:
                    user[side].append(image_features(b["image"].float(), features))
                if progress:
                    progress(len(b["image"]))
        if paired:
            _pairwise(chosen, mean, r["image"].float(), g["image"].float(), None, evaluator)
    out = _distribution(chosen, gen, ref, evaluator.expression_names)
    out.update(mean.result())
    if features is not None:
        gf, rf = torch.cat(user["gen"]), torch.cat(user["ref"])
        picked = {m.name for m in chosen}
        if "fid" in picked:
            out["fid_features"] = fid_from_features(gf, rf)
        if "kid" in picked:
            out["kid_features"], out["kid_features_std"] = kid_from_features(gf, rf)
    return out
