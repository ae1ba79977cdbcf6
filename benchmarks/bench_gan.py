"""StyleGAN2 training iterations per second through mien's engine against a bare PyTorch loop, and
the generator's forward in both modulation modes (issue 15, item 10).

Training: both sides train the same ``stylegan/small`` networks (32 px, W 128-d, synthesis
64-64-32-16) on the same pre-rendered world images held in memory, with the same schedule and
losses: D step (logistic), lazy R1 every 16 steps, G step (non-saturating, style mixing), lazy path
length every 4 steps, the lazy-regularisation Adam correction (lr * c, betas ** c, c = k / (k + 1)),
and the generator's EMA (half-life 10 kimg with ramp-up 0.05). The bare loop calls the model's own
loss functions, so the difference is the engine (Lightning, phases, logging, loader). Each is run
for N and 2N steps (N a multiple of 16, so both hold whole R1 periods); the steady-state rate is
N / (t(2N) - t(N)) iterations per second, which removes the fixed start-up; medians over repeats,
printed as JSON with the ratio (target: engine / bare >= 0.95). Times are this process's CPU
seconds (``time.process_time``; the data stay in memory, so no worker processes): on a shared
machine whose load swings, wall-clock differences of whole runs were dominated by the other
processes (a first run gave t(2N) < t(N) for the engine). One intra-op thread by default: with
two, OpenMP's spin-waiting for a descheduled peer thread is counted as CPU time too, which under
load inflated CPU times up to 25-fold.

Forward: ``synthesis(ws)`` of the same generator at the same batch, fused (grouped convolution,
StyleGAN2's form) vs non-fused (scale, convolve, demodulate; mien's CPU default), medians of
repeated timings (CPU seconds), under torch.no_grad.
Run: python benchmarks/bench_gan.py [--steps 16] [--repeats 3] [--batch 32]
(On the shared 2-core machine one iteration at batch 32 took about 7 s; --repeats 2 there.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from bench_train import Images  # the benchmarks folder is on sys.path when run as a script
from mien.config import load_yaml
from mien.data.world import WorldDataset
from mien.models.base import build_model
from mien.train import fit, run_config
from mien.train.module import lazy_ratio, step_seed


def preset(steps: int, batch: int, n: int) -> dict:
    cfg = load_yaml("stylegan/small")
    cfg["model"] = {**cfg["model"], "image_size": cfg["data"]["size"]}
    cfg["data"] = {**cfg["data"], "n": n, "batch_size": batch}
    cfg["train"] = {**cfg["train"], "max_steps": steps, "save_every": 0, "log_every": 1000}
    return cfg


def bare_loop(images, steps, batch) -> float:
    """Seconds for ``steps`` iterations of the phases in a plain loop (with the engine's per-step seeding)."""
    cfg = preset(steps, batch, len(images))
    train = cfg["train"]
    torch.manual_seed(0)
    model = build_model(cfg["model"])
    ema = build_model(cfg["model"]).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    groups, phases = model.param_groups(), model.phases()
    opts = {}
    for name, params in groups.items():
        c = lazy_ratio(phases, name)
        o = train["optim"][name]
        opts[name] = torch.optim.Adam(params, lr=o["lr"] * c, betas=tuple(b ** c for b in o["betas"]))
    averaged = [n for n, _ in model.named_parameters() if n.startswith(("mapping.", "synthesis."))]
    live_p, ema_p = dict(model.named_parameters()), dict(ema.named_parameters())
    g = torch.Generator().manual_seed(0)
    start = time.process_time()
    for step in range(steps):
        torch.manual_seed(step_seed(0, step, 0))
        b = {"image": images[torch.randint(len(images), (batch,), generator=g)]}
        for phase in phases:
            if step % phase.every:
                continue
            loss = phase.loss(b, step)["loss"]
            opts[phase.group].zero_grad(set_to_none=True)
            (loss * (phase.every if phase.lazy else 1)).backward(inputs=groups[phase.group])
            opts[phase.group].step()
        half_life = min(train["ema_kimg"] * 1000, (step + 1) * batch * train["ema_rampup"])
        with torch.no_grad():
            torch._foreach_lerp_([ema_p[n] for n in averaged], [live_p[n].detach() for n in averaged],
                                 1 - 0.5 ** (batch / half_life))
            for b_ema, b_live in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b_live)
    return time.process_time() - start


def engine(images, steps, batch) -> float:
    cfg = run_config(preset(steps, batch, len(images)))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.process_time()
        fit(cfg, f"{tmp}/run", progress=False, dataset=Images(images))
        return time.process_time() - start


def steady_rates(repeats, images, steps, batch) -> dict:
    """Per method (bare, engine): (iterations/s in steady state, start-up seconds), medians over
    repeats; the two methods alternate inside each repeat, so drifting machine load hits both."""
    methods = {"bare": bare_loop, "engine": engine}
    for fn in methods.values():
        fn(images, 2, batch)  # warm-up (imports, allocator); step 0 runs every phase
    runs = {name: [] for name in methods}
    for _ in range(repeats):
        t1 = {name: fn(images, steps, batch) for name, fn in methods.items()}
        t2 = {name: fn(images, 2 * steps, batch) for name, fn in methods.items()}
        for name in methods:
            if t2[name] <= t1[name]:
                raise RuntimeError(f"{name}: {2 * steps} steps took no longer than {steps}; the machine is too noisy")
            runs[name].append((steps / (t2[name] - t1[name]), max(0.0, 2 * t1[name] - t2[name])))
    return {name: (statistics.median(r for r, _ in v), statistics.median(s for _, s in v)) for name, v in runs.items()}


@torch.no_grad()
def forward_seconds(batch: int, repeats: int) -> dict:
    cfg = load_yaml("stylegan/small")
    torch.manual_seed(0)
    model = build_model({**cfg["model"], "image_size": cfg["data"]["size"]}).eval()
    ws = model.broadcast(model.map(torch.randn(batch, model.config.z_dim)))
    noise = model.noise_maps(batch, torch.Generator().manual_seed(0))
    out = {}
    for fused in (False, True, False, True):  # interleaved, so drifting machine load hits both
        model.synthesis.set_fused(fused)
        model.synthesize(ws, noise)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.process_time()
            model.synthesize(ws, noise)
            times.append(time.process_time() - start)
        out.setdefault("fused" if fused else "non_fused", []).extend(times)
    return {k: statistics.median(v) for k, v in out.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16, help="N (rounded up to a multiple of 16)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--forward-repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (see the docstring)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = -(-args.steps // 16) * 16
    images = WorldDataset(512, 32, seed=0).batch(range(512))["image"]
    rates = steady_rates(args.repeats, images, steps, args.batch)
    (bare, bare_start), (eng, eng_start) = rates["bare"], rates["engine"]
    fwd = forward_seconds(args.batch, args.forward_repeats)
    print(json.dumps({
        "preset": "stylegan/small", "batch": args.batch, "steps": [steps, 2 * steps],
        "threads": torch.get_num_threads(),
        "bare_loop_iterations_per_cpu_s": round(bare, 3), "engine_iterations_per_cpu_s": round(eng, 3),
        "ratio_engine_vs_bare": round(eng / bare, 3),
        "startup_s": {"bare": round(bare_start, 2), "engine": round(eng_start, 2)},
        "forward_cpu_ms": {k: round(1000 * v, 1) for k, v in fwd.items()},
        "ratio_forward_nonfused_speedup_vs_fused": round(fwd["fused"] / fwd["non_fused"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
