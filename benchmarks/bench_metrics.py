"""Time of mien's metric suite against peers, in one run, printed as JSON (medians of runs).

1. FID + KID + precision/recall on N 64-px world images per side: mien extracts evaluator
   features once per image set and computes all three from them; the peer is torchmetrics' own
   path (``FrechetInceptionDistance`` and ``KernelInceptionDistance`` with mien's feature
   extractor, each running the extractor) plus precision/recall from scikit-learn's
   ``NearestNeighbors`` and ``pairwise_distances_chunked``.
2. The disentanglement suite on N codes of world factors (a noisy linear map of them); the
   peer is MIG with scikit-learn's ``mutual_info_score`` (the disentanglement_lib way).

Run: python benchmarks/bench_metrics.py [--n 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch


def median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def world_images(n: int, seed: int) -> torch.Tensor:
    from mien.data.world import WorldDataset

    ds = WorldDataset(n, 64, seed)
    return torch.cat([ds.batch(range(s, min(s + 500, n)))["image"] for s in range(0, n, 500)])


def mien_distribution(gen, ref, ev):
    from mien.metrics.fid import fid_from_features, image_features, kid_from_features
    from mien.metrics.pr import precision_recall

    gf, rf = image_features(gen, ev), image_features(ref, ev)
    return {"fid": fid_from_features(gf, rf), "kid": kid_from_features(gf, rf)[0], **precision_recall(gf, rf)}


def peer_distribution(gen, ref, ev):
    from sklearn.metrics import pairwise_distances_chunked
    from sklearn.neighbors import NearestNeighbors
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from mien.metrics.fid import MienFeatures

    fid = FrechetInceptionDistance(feature=MienFeatures(ev), normalize=True)
    kid = KernelInceptionDistance(feature=MienFeatures(ev), normalize=True, subsets=100, subset_size=1000)
    for metric in (fid, kid):
        for start in range(0, len(gen), 250):
            metric.update((ref[start:start + 250] + 1) / 2, real=True)
            metric.update((gen[start:start + 250] + 1) / 2, real=False)
    out = {"fid": float(fid.compute()), "kid": float(kid.compute()[0])}
    with torch.no_grad():
        gf = torch.cat([ev.features(gen[s:s + 250]) for s in range(0, len(gen), 250)]).numpy()
        rf = torch.cat([ev.features(ref[s:s + 250]) for s in range(0, len(ref), 250)]).numpy()

    def support(a, b):  # share of a inside some k-NN ball of b
        radii = NearestNeighbors(n_neighbors=4).fit(b).kneighbors(b)[0][:, -1]
        return float(np.mean(np.concatenate([(d <= radii[None]).any(1) for d in pairwise_distances_chunked(a, b)])))

    out.update(precision=support(gf, rf), recall=support(rf, gf))
    return out


def peer_mig(codes, factors, schema):
    from sklearn.metrics import mutual_info_score

    from mien.metrics.disentangle import discretise, prepare

    z, _, _, v = prepare(codes, factors, schema)
    zd = np.stack([discretise(c) for c in z.T], 1)
    m = np.array([[mutual_info_score(zd[:, i], v[:, k]) for k in range(v.shape[1])] for i in range(z.shape[1])])
    h = np.array([mutual_info_score(v[:, k], v[:, k]) for k in range(v.shape[1])])
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / h))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from mien.data.world import WorldDataset
    from mien.evaluator import load_evaluator
    from mien.metrics.disentangle import disentanglement_suite, mig

    ev = load_evaluator(64)
    gen, ref = world_images(args.n, 1), world_images(args.n, 2)
    t_mien, v_mien = median_time(lambda: mien_distribution(gen, ref, ev), args.repeats)
    t_peer, v_peer = median_time(lambda: peer_distribution(gen, ref, ev), args.repeats)

    ds = WorldDataset(args.n, 64, 0)
    factors = {k: v.numpy() for k, v in ds.draw(range(args.n)).items()}
    continuous = [f.name for f in ds.factors if f.kind == "continuous"][:10]
    rng = np.random.default_rng(0)
    codes = np.stack([factors[n] for n in continuous], 1) @ np.linalg.qr(rng.normal(size=(10, 10)))[0]
    codes += 0.1 * rng.normal(size=codes.shape)
    t_suite, suite = median_time(lambda: disentanglement_suite(codes, factors, ds.factors), args.repeats)
    t_mig, v_mig = median_time(lambda: mig(codes, factors, ds.factors), args.repeats)
    t_peer_mig, v_peer_mig = median_time(lambda: peer_mig(codes, factors, ds.factors), args.repeats)
    print(json.dumps({
        "n": args.n, "repeats": args.repeats, "threads": torch.get_num_threads(),
        "fid_kid_pr": {"mien_s": round(t_mien, 2), "peer_torchmetrics_sklearn_s": round(t_peer, 2),
                       "speedup": round(t_peer / t_mien, 2), "mien": v_mien, "peer": v_peer},
        "disentanglement_suite": {"mien_s": round(t_suite, 2), "scores": suite},
        "mig": {"mien_s": round(t_mig, 3), "peer_sklearn_s": round(t_peer_mig, 3), "speedup": round(t_peer_mig / t_mig, 2),
                "mien": v_mig, "peer": v_peer_mig},
    }, indent=2, default=float))


if __name__ == "__main__":
    main()
