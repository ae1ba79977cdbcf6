"""DDIM sampling: mien's sampler against diffusers' DDIMPipeline with the same U-Net weights, and
diffusion training images/s of mien's engine against a bare PyTorch loop, in one run (JSON).

Sampling: 64 images at 32x32, 50 DDIM steps, eta = 0, the same UNet2DModel and the same x_T for
both; the ratio diffusers_time / mien_time should be >= 1.0 (mien adds no overhead). The outputs
are compared too (max abs difference). Training reuses bench_train's steady-state measurement.
Run: python benchmarks/bench_diffusion.py [--repeats 3] [--preset tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from diffusers import DDIMPipeline, DDIMScheduler

from mien.data.world import WorldDataset
from mien.diffusion import sampling
from mien.diffusion.denoisers import DenoiserConfig, UNetDenoiser
from mien.diffusion.schedule import NoiseSchedule

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import bare_loop, engine, steady_rate  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = UNetDenoiser(DenoiserConfig(preset=args.preset), 32, 3).eval()
    schedule = NoiseSchedule.make("linear", 1000)
    x_T = torch.randn(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    grid = sampling.timesteps(1000, args.steps)

    def ours():
        return sampling.sample(lambda x, t: net(x, t), schedule, x_T, grid)

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False,
                              set_alpha_to_one=True, steps_offset=0)
    pipe = DDIMPipeline(unet=net.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)

    def theirs():
        with torch.no_grad():
            scheduler.set_timesteps(args.steps)
            x = x_T.clone()
            for t in pipe.progress_bar(scheduler.timesteps):
                x = scheduler.step(pipe.unet(x, t).sample, t, x, eta=0.0).prev_sample
            return x

    def pipeline():
        with torch.no_grad():
            return pipe(batch_size=args.n, num_inference_steps=args.steps, eta=0.0, output_type="np",
                        generator=torch.Generator().manual_seed(0)).images

    t_ours, x_ours = timed(ours, args.repeats)
    t_loop, x_loop = timed(theirs, args.repeats)
    t_pipe, _ = timed(pipeline, args.repeats)
    images = WorldDataset(512, 32, 0).batch(range(512))["image"]
    section = {"name": "diffusion", "image_size": 32, "denoiser": {"preset": args.preset}}
    bare, _ = steady_rate(bare_loop, 1, images, 32, 10, 32, section)
    eng, _ = steady_rate(engine, 1, images, 32, 10, 32, section)
    print(json.dumps({
        "sampling": {"images": args.n, "size": 32, "steps": args.steps, "threads": torch.get_num_threads(),
                     "mien_s": round(t_ours, 3), "diffusers_pipeline_s": round(t_pipe, 3),
                     "diffusers_scheduler_loop_s": round(t_loop, 3),
                     "ratio_pipeline_vs_mien": round(t_pipe / t_ours, 3),
                     "max_abs_difference_vs_diffusers": float((x_ours - x_loop).abs().max())},
        "training": {"bare_loop_images_per_s": round(bare, 1), "engine_images_per_s": round(eng, 1),
                     "ratio_engine_vs_bare": round(eng / bare, 3)},
    }, indent=2))


if __name__ == "__main__":
    main()
