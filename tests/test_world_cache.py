"""The world's render cache: bit-identical to quantised renders and to an export read back,
invalidated by the fingerprint, built once under a claim, safe to pickle, clear when it fails."""

import multiprocessing
import pickle

import numpy as np
import pytest
import torch

from mien.data.folder import FolderDataset, export_samples
from mien.data.source import DataConfig, make_dataset
from mien.data.world import WorldDataset
from mien.data.world import cache as cache_module
from mien.data.world.cache import cache_root, dequantise, quantise
from mien.errors import DataError, OutputError

SMALL = {"n": 40, "size": 32, "seed": 3}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "world"


def builds(monkeypatch):
    """Count the cache builds (rendering passes) from now on."""
    count, real = [], cache_module._render_into
    monkeypatch.setattr(cache_module, "_render_into", lambda *a: (count.append(1), real(*a)))
    return count


def test_cached_faces_are_the_quantised_renders_and_the_exported_pngs(tmp_path):
    plain = WorldDataset(**SMALL, labels=["smile"])
    cached = WorldDataset(**SMALL, labels=["smile"], cache=True, progress=False)
    idx = [7, 0, 39, 7, 12]  # unsorted, repeated
    a, b = cached.batch(idx), plain.batch(idx)
    assert a["image"].dtype == torch.float32 and torch.equal(a["image"], dequantise(quantise(b["image"])))
    assert (a["image"] - b["image"]).abs().max() <= 1 / 255 + 1e-6
    for key in ("landmarks2d", "landmarks3d", "label", "attributes"):
        assert torch.equal(a[key], b[key]), key
    assert all(torch.equal(a["factors"][k], b["factors"][k]) for k in b["factors"])
    folder = FolderDataset(export_samples(plain.samples(), plain.factors, tmp_path / "export", progress=False))
    assert all(torch.equal(folder[i]["image"], cached[i]["image"]) for i in (0, 12, 39))


def test_quantise_rounds_to_the_nearest_level():
    x = torch.tensor([-1.0, -0.999, 0.0, 1 / 255, 1.0, 2.0])
    assert quantise(x).tolist() == [0, 0, 128, 128, 255, 255]  # 127.5 rounds half to even; clamp at +-1
    assert torch.equal(quantise(dequantise(torch.arange(256, dtype=torch.uint8))), torch.arange(256, dtype=torch.uint8))


def test_cache_is_reused_and_invalidated_by_the_fingerprint(cache_dir, monkeypatch):
    count = builds(monkeypatch)
    WorldDataset(**SMALL, cache=True, progress=False).cache
    WorldDataset(**SMALL, cache=True, progress=False).cache
    assert len(count) == 1 and len(list(cache_dir.iterdir())) == 2  # one folder and its lock
    variants = [{**SMALL, "seed": 4}, {**SMALL, "n": 41}, {**SMALL, "size": 33}, {**SMALL, "fixed": {"yaw": 0.0}},
                {**SMALL, "ranges": {"age": [0.2, 0.4]}}]
    for kw in variants:
        WorldDataset(**kw, cache=True, progress=False).cache
    assert len(count) == 1 + len(variants)
    monkeypatch.setattr(cache_module, "_renderer_version", lambda: "edited renderer")
    WorldDataset(**SMALL, cache=True, progress=False).cache
    assert len(count) == 2 + len(variants)


def _open_in_child(q):
    ds = WorldDataset(**SMALL, cache=True, progress=False)
    q.put(ds.batch(list(range(40)))["image"].numpy())


def test_concurrent_builders_render_once_and_agree(cache_dir, monkeypatch):
    """Three processes open the same missing cache at once: one renders under the claim, the others
    wait and read its result; no temp folder is left."""
    slow, real = [], cache_module._render_into

    def render_slowly(*a):
        import time

        with open(cache_dir.parent / "builds.txt", "a") as f:
            f.write("build\n")
        time.sleep(0.3)  # keep the claim while the others arrive
        real(*a)

    cache_dir.mkdir(parents=True)
    monkeypatch.setattr(cache_module, "_render_into", render_slowly)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_open_in_child, args=(q,)) for _ in range(3)]
    for p in procs:
        p.start()
    images = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert (cache_dir.parent / "builds.txt").read_text() == "build\n"
    assert all(np.array_equal(images[0], im) for im in images[1:])
    assert not list(cache_dir.glob(".*.tmp"))


def test_pickled_dataset_carries_no_pixels_and_reads_the_same():
    ds = WorldDataset(**SMALL, cache=True, progress=False)
    first = ds.batch([1, 2])["image"]  # maps the arrays in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 40 * 3 * 32 * 32  # the arrays are mapped again in the worker, not copied
    assert torch.equal(pickle.loads(blob).batch([1, 2])["image"], first)


def test_a_failed_or_killed_build_leaves_nothing_and_the_next_open_builds(cache_dir, monkeypatch):
    def broken(maps, render_chunk, n, progress):
        maps["image"][:5] = 7
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "_render_into", broken)
    with pytest.raises(KeyboardInterrupt):
        WorldDataset(**SMALL, cache=True, progress=False).cache
    assert [p.suffix for p in cache_dir.iterdir()] == [".lock"]
    monkeypatch.undo()
    monkeypatch.setenv("MIEN_CACHE", str(cache_dir.parent))
    (cache_dir / ".deadbeef.1234.tmp").mkdir()  # what SIGKILL leaves: a temp folder, never a final one
    key = cache_module.fingerprint(WorldDataset(**SMALL).draw, 40, 32)
    (cache_dir / ".deadbeef.1234.tmp").rename(cache_dir / f".{key}.1234.tmp")
    WorldDataset(**SMALL, cache=True, progress=False).cache
    assert sorted(p.name for p in cache_dir.iterdir()) == [key, f"{key}.lock"]


def test_full_disk_unwritable_root_and_damaged_cache_are_one_line(cache_dir, monkeypatch, tmp_path):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OutputError, match=r"needs 0.2 MiB .* MIEN_CACHE .*data.cache=false"):
        WorldDataset(**SMALL, cache=True, progress=False).cache
    monkeypatch.undo()
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MIEN_CACHE", str(tmp_path / "file"))
    with pytest.raises(OutputError, match="cannot write the world render cache.*data.cache=false"):
        WorldDataset(**SMALL, cache=True, progress=False).cache
    monkeypatch.setenv("MIEN_CACHE", str(cache_dir.parent))
    WorldDataset(**SMALL, cache=True, progress=False).cache
    [folder] = [p for p in cache_root().iterdir() if p.is_dir()]
    with (folder / "image.npy").open("r+b") as f:
        f.truncate(500)
    with pytest.raises(DataError, match="damaged.*delete that folder"):
        WorldDataset(**SMALL, cache=True, progress=False).cache


def test_data_cache_option_reaches_the_world_and_defaults_on(cache_dir):
    assert DataConfig().cache is True
    on = make_dataset(DataConfig(n=40, size=32, seed=3))
    off = make_dataset(DataConfig(n=40, size=32, seed=3, cache=False))
    assert on.cache is not None and off.cache is None
    assert torch.equal(on.batch([3])["image"], dequantise(quantise(off.batch([3])["image"])))
