"""Held-out scores of the evaluators on fresh world data (a seed never used in training): what
meta.json records and what the tests check (issue 5, "What it must show")."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from mien.data.world import WorldDataset, WorldSequenceDataset, pad_sequences
from mien.metrics.image import landmark_nme, verification_auc

BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
HELDOUT_SEED = 90_001


@torch.no_grad()
def _run(model, ds: WorldDataset, batch_size: int = 250) -> tuple[dict, dict]:
    outs, batches = [], []
    for start in range(0, len(ds), batch_size):
        b = ds.batch(range(start, min(start + batch_size, len(ds))))
        outs.append(model(b["image"]))
        batches.append(b)
    out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    data = {k: torch.cat([b[k] for b in batches]) for k in ("label", "attributes", "landmarks2d")}
    data["factors"] = {k: torch.cat([b["factors"][k] for b in batches]) for k in batches[0]["factors"]}
    return out, data


def evaluator_scores(model, n: int = 2000, seed: int = HELDOUT_SEED, n_identities: int = 100) -> dict:
    """Expression accuracy (faces of intensity >= 0.5, and per intensity band), attribute accuracy
    (all and per attribute), landmark NME (inter-ocular), pose MAE in degrees, intensity MAE on
    expressive faces, and identity verification ROC AUC over all pairs of ``n // 4`` faces of
    ``n_identities`` unseen identities (chance 0.5)."""
    size = model.config.size
    out, data = _run(model, WorldDataset(n, size, seed))
    f = data["factors"]
    correct = (out["expression"].argmax(1) == data["label"]).float()
    scores = {"expression_acc": correct[f["intensity"] >= 0.5].mean().item()}
    for lo, hi in BANDS:
        band = (f["intensity"] >= lo) & ((f["intensity"] < hi) | (hi == 1.0))
        scores[f"expression_acc_{lo:.2f}_{hi:.2f}"] = correct[band].mean().item()
    hits = ((out["attributes"] > 0).float() == data["attributes"]).float()
    scores["attribute_acc"] = hits.mean().item()
    for i, name in enumerate(("sex", "glasses", "beard", "hat")):
        scores[f"{name}_acc"] = hits[:, i].mean().item()
    scores["landmark_nme"] = landmark_nme(out["landmarks"], data["landmarks2d"]).item()
    pose = torch.stack([f["yaw"], f["pitch"], f["roll"]], 1)
    scores["pose_mae_deg"] = (model.pose_degrees(out["pose"]) - pose).abs().mean().item()
    expressive = data["label"] != 0
    scores["intensity_mae"] = (out["intensity"] - f["intensity"])[expressive].abs().mean().item()
    ident_out, ident = _run(model, WorldDataset(max(n // 4, 50), size, seed + 1, n_identities=n_identities))
    scores["identity_auc"] = verification_auc(ident_out["identity"], ident["factors"]["identity"])
    return scores


def heldout_folder(path, size: int, train_split: str | None):
    """The rows of a prepared folder to score a model trained on ``train_split`` on: its val
    split, else its test split; all rows when it was trained on all of them (or has no other)."""
    from mien.data.folder import FolderDataset
    from mien.errors import ConfigError

    for split in (("val", "test") if train_split else ()):
        if split != train_split:
            try:
                return FolderDataset(path, size=size, split=split)
            except ConfigError:  # no such split
                continue
    return FolderDataset(path, size=size, split=train_split)


@torch.no_grad()
def data_scores(model, dataset, n: int = 2000, batch_size: int = 250) -> dict:
    """Scores of an evaluator fine-tuned on real data (``labels: data``) on the first ``n`` items
    of ``dataset``: expression accuracy over the classes it maps, attribute accuracy over the
    attributes it maps, landmark NME where the data has landmarks."""
    hits = {"expression_acc": [], "attribute_acc": []}
    nme = []
    for start in range(0, min(n, len(dataset)), batch_size):
        batch = default_collate([dataset[i] for i in range(start, min(start + batch_size, n, len(dataset)))])
        out, t = model(batch["image"]), model.data_targets(batch)
        if "expression" in t:
            known = t["expression"] >= 0
            hits["expression_acc"].append((out["expression"].argmax(1) == t["expression"])[known].float())
        if "attributes" in t:
            known = ~torch.isnan(t["attributes"])
            hits["attribute_acc"].append(((out["attributes"] > 0).float() == t["attributes"])[known].float())
        if "landmarks" in t:
            nme.append(landmark_nme(out["landmarks"], t["landmarks"]).item() * len(batch["image"]))
    scores = {k: torch.cat(v).mean().item() for k, v in hits.items() if v and len(torch.cat(v))}
    if nme:
        scores["landmark_nme"] = sum(nme) / min(n, len(dataset))
    return scores


@torch.no_grad()
def sequence_scores(model, n: int = 1000, seed: int = HELDOUT_SEED) -> dict:
    """Accuracy of the sequence classifier on ``n`` fresh world sequences (35-45 frames)."""
    ds = WorldSequenceDataset(n, seed, frames=(35, 45))
    correct = 0
    for start in range(0, n, 200):
        b = pad_sequences([ds[i] for i in range(start, min(start + 200, n))])
        correct += (model(b["sequence"], b["length"]).argmax(1) == b["label"]).sum().item()
    return {"accuracy": correct / n}
