"""Images per second of mien's training engine against a bare PyTorch loop, and against pythae's
trainer when pythae is installed (`pip install pythae`), on the identical model and data.

All three train the same `vae` network (mien's encoder/decoder, same widths, latent size, loss,
Adam, batch size) on the same pre-rendered world images held in memory, so the data pipeline is
not part of the comparison. Each is run for N and for 2N steps; the steady-state rate is
N * batch / (t(2N) - t(N)), which removes fixed start-up costs (Lightning's trainer set-up,
pythae's sanity checks); the start-up seconds are reported too. Medians of several repeats are
printed with the ratios as JSON (target: engine / bare >= 0.9).
Run: python benchmarks/bench_train.py [--steps 60] [--repeats 3] [--size 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from mien.data.world import WorldDataset
from mien.models.base import build_model
from mien.train import fit, run_config


class Images(torch.utils.data.Dataset):
    """Pre-rendered images as sample dicts, with batched fetching like the world data set."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i]}

    def __getitems__(self, indices):
        batch = self.images[indices]
        return [{"image": x} for x in batch]


def model_section(size: int) -> dict:
    return {"name": "vae", "image_size": size, "widths": [32, 64, 128], "latent_dim": 10}


def bare_loop(images, size, steps, batch, section=None) -> float:
    torch.manual_seed(0)
    model = build_model(section or model_section(size))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        x = images[torch.randint(len(images), (batch,), generator=g)]
        loss = model.loss({"image": x})["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def engine(images, size, steps, batch, section=None) -> float:
    cfg = run_config({"model": section or model_section(size), "data": {"size": size, "n": len(images), "batch_size": batch},
                      "train": {"max_steps": steps, "lr": 1e-3, "save_every": 0, "log_every": 50}})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        fit(cfg, f"{tmp}/run", progress=False, dataset=Images(images))
        return steps * batch / (time.perf_counter() - start)


def pythae_trainer(images, size, steps, batch) -> float:
    import logging

    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.getLogger("pythae").setLevel(logging.ERROR)
    mien_vae = build_model(model_section(size))

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = mien_vae.encoder

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mien_vae.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    config = VAEConfig(input_dim=(3, size, size), latent_dim=10, reconstruction_loss="mse")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    epochs = max(1, round(steps * batch / len(images)))
    with tempfile.TemporaryDirectory() as tmp:
        data = BaseDataset(images, torch.zeros(len(images)))
        trainer = BaseTrainer(model, train_dataset=data, training_config=BaseTrainerConfig(
            output_dir=tmp, num_epochs=epochs, per_device_train_batch_size=batch, learning_rate=1e-3,
            steps_saving=None, steps_predict=None, no_cuda=True))
        start = time.perf_counter()
        trainer.train()
        return epochs * len(images) / (time.perf_counter() - start)


def seconds(fn, images, size, steps, batch, *extra) -> float:
    return steps * batch / fn(images, size, steps, batch, *extra)


def steady_rate(fn, repeats, images, size, steps, batch, *extra) -> tuple[float, float]:
    """(images/s in steady state, start-up seconds), medians over repeats."""
    seconds(fn, images, size, steps, batch, *extra)  # warm-up (imports, allocator)
    rates, startups = [], []
    for _ in range(repeats):
        t1 = seconds(fn, images, size, steps, batch, *extra)
        t2 = seconds(fn, images, size, 2 * steps, batch, *extra)
        rates.append(steps * batch / max(t2 - t1, 1e-9))
        startups.append(max(0.0, 2 * t1 - t2))
    return statistics.median(rates), statistics.median(startups)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images = WorldDataset(args.steps * args.batch // 2, args.size, seed=0).batch(range(args.steps * args.batch // 2))["image"]
    work = (images, args.size, args.steps, args.batch)
    bare, bare_start = steady_rate(bare_loop, args.repeats, *work)
    eng, eng_start = steady_rate(engine, args.repeats, *work)
    result = {"size": args.size, "batch": args.batch, "steps": [args.steps, 2 * args.steps],
              "threads": torch.get_num_threads(),
              "bare_loop_images_per_s": round(bare, 1), "engine_images_per_s": round(eng, 1),
              "ratio_engine_vs_bare": round(eng / bare, 3),
              "startup_s": {"bare": round(bare_start, 2), "engine": round(eng_start, 2)}}
    try:
        import pythae  # noqa: F401
    except ImportError:
        result["pythae"] = "not installed (pip install 'mien[bench]')"
    else:
        peer, peer_start = steady_rate(pythae_trainer, args.repeats, *work)
        result.update({"pythae_images_per_s": round(peer, 1), "ratio_engine_vs_pythae": round(eng / peer, 3)})
        result["startup_s"]["pythae"] = round(peer_start, 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
