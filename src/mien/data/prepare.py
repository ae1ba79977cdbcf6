"""``mien data prepare``: any supported layout to mien's folder layout at one size, resumably.

Record i of the layout becomes ``images/{i:06d}.png``, written atomically, then its result
``.parts/{i:06d}.json`` (its landmarks, or why it was skipped). A run skips every record that
already has a result (except unreadable ones, retried in case the file was replaced), so an
interrupted run continues where it stopped and never writes a file twice; ``prepare.json`` holds the options, and a run with other options or another source is
refused. The end writes ``factors.json``, ``skipped.csv`` (each left-out record and why) and,
last, ``metadata.csv`` (``file_name``, ``split``, one column per factor, landmark columns;
:mod:`mien.data.folder`), so ``data.path=OUT`` trains on it. Work is spread over processes
(spawned, each with its own face finder).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from mien.data.factors import schema_to_json
from mien.data.folder import landmark_columns, progress_bar
from mien.data.formats import open_layout
from mien.data.formats.base import Layout, Record
from mien.errors import ConfigError, DataError, OutputError
from mien.io import atomic_save_png, atomic_write_text, ensure_writable_dir

PARTS = ".parts"
SETTINGS = "prepare.json"
CHUNK = 16
_FINDER = None  # the face finder of a worker process


@dataclass
class PrepareReport:
    out: Path
    layout: str
    written: int = 0
    reused: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)


def _init_worker(detect: bool):
    global _FINDER
    if detect:
        from mien.data.landmarks import FaceFinder

        _FINDER = FaceFinder()


def _prepare_one(i: int, record: Record, out: Path, size: int, align: bool, finder=None) -> dict:
    """Write record ``i``'s image and result; return the result."""
    try:
        framed = record.crop(size, align, finder)
        result = {"status": "ok"} if framed is not None else {"status": "no face found"}
    except DataError as e:
        framed, result = None, {"status": "unreadable", "detail": str(e)}
    except (ConfigError, ValueError, np.linalg.LinAlgError) as e:  # degenerate annotated landmarks
        framed, result = None, {"status": "bad landmarks", "detail": str(e) or type(e).__name__}
    if framed is not None:
        atomic_save_png(Image.fromarray(framed["image"]), out / "images" / f"{i:06d}.png")
        result.update({k: np.asarray(v, dtype=np.float32).tolist() for k, v in framed.items() if k != "image"})
    atomic_write_text(out / PARTS / f"{i:06d}.json", json.dumps(result))
    return result


def _chunk(jobs: list[tuple[int, Record]], out: Path, size: int, align: bool, finder=None) -> list[dict]:
    """Prepare ``jobs`` with ``finder``, or in a worker process with the worker's own finder."""
    return [_prepare_one(i, r, out, size, align, finder or _FINDER) for i, r in jobs]


def _check_out(out: Path, settings: dict):
    path = out / SETTINGS
    if path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before != settings:
            raise OutputError(f"{out} was prepared with other options or from another source ({path}); "
                              "choose a new --out, or rerun with the same options to continue")
    elif out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise OutputError(f"{out} is not empty and was not written by mien data prepare; choose a new or empty folder")


def _status(out: Path, i: int) -> str | None:
    """The recorded result of record ``i`` (None: not done, or its result file is damaged)."""
    try:
        return json.loads((out / PARTS / f"{i:06d}.json").read_text(encoding="utf-8"))["status"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _needs_finder(layout: Layout, align: bool) -> bool:
    return align and any(r.landmarks is None for r in layout.records)


def _run(todo, layout, out, size, align, workers, bar, task) -> None:
    detect = _needs_finder(layout, align)
    jobs = [(i, layout.records[i]) for i in todo]
    step = max(1, min(CHUNK, -(-len(jobs) // (4 * workers))))  # several chunks per worker, at most CHUNK
    chunks = [jobs[k:k + step] for k in range(0, len(jobs), step)]
    if workers <= 1 or len(chunks) <= 1:
        finder = None
        if detect:
            from mien.data.landmarks import FaceFinder

            finder = FaceFinder()
        try:
            for chunk in chunks:
                bar.advance(task, len(_chunk(chunk, out, size, align, finder)))
        finally:
            if finder is not None:
                finder.close()
        return
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(detect,)) as pool:
        pending = {pool.submit(_chunk, c, out, size, align) for c in chunks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    bar.advance(task, len(future.result()))
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _metadata(layout: Layout, results: list[dict]) -> tuple[str, list[list[str]]]:
    ok = [i for i, r in enumerate(results) if r["status"] == "ok"]
    keys = [k for k in ("landmarks2d", "landmarks3d") if ok and all(k in results[i] for i in ok)]
    header = ["file_name", "split", *(f.name for f in layout.factors)]
    for k in keys:
        header += landmark_columns(k, len(results[ok[0]][k]))
    rows = []
    for i in ok:
        record = layout.records[i]
        row = [f"images/{i:06d}.png", record.split]
        row += [str(int(record.factors[f.name])) if f.discrete else repr(float(record.factors[f.name]))
                for f in layout.factors]
        for k in keys:
            row += [str(np.float32(v)) for v in np.asarray(results[i][k], dtype=np.float32).T.ravel()]
        rows.append(row)
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    return text.getvalue(), rows


def prepare(root, out, size: int = 64, layout: str = "auto", align: bool = False, workers: int | None = None,
            progress: bool = True) -> PrepareReport:
    """Prepare data set folder ``root`` (in ``layout``) into ``out`` at ``size`` px; see the module docstring."""
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise DataError(f"--size {size!r}: choose an image size from 8 to 1024 px")
    lay = open_layout(root, layout)
    out = Path(out)
    if _needs_finder(lay, align):
        from mien.data.landmarks import _mediapipe

        _mediapipe()  # a missing extra is one line now, not one per worker
    settings = {"source": str(Path(root).resolve()), "layout": lay.name, "size": size, "align": align,
                "records": len(lay.records)}
    _check_out(out, settings)
    ensure_writable_dir(out / "images")
    ensure_writable_dir(out / PARTS)
    atomic_write_text(out / SETTINGS, json.dumps(settings))
    report = PrepareReport(out, lay.name)
    todo = [i for i in range(len(lay.records)) if _status(out, i) in (None, "unreadable")]  # a replaced file is retried
    report.reused = len(lay.records) - len(todo)
    with progress_bar(progress) as bar:
        task = bar.add_task(f"prepare {out}", total=len(lay.records), completed=report.reused)
        _run(todo, lay, out, size, align, workers or os.cpu_count() or 1, bar, task)
    report.written = len(todo)
    results = []
    for i in range(len(lay.records)):
        try:
            results.append(json.loads((out / PARTS / f"{i:06d}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            raise OutputError(f"{out / PARTS / f'{i:06d}.json'} is missing or damaged; rerun the same command") from None
    skipped = [(lay.records[i].name, r["status"], r.get("detail", "")) for i, r in enumerate(results) if r["status"] != "ok"]
    report.skipped = Counter(s[1] for s in skipped)
    report.skipped.update({reason: n for reason, n in lay.skipped.items()})
    text, rows = _metadata(lay, results)
    report.kept = len(rows)
    if not rows:
        raise DataError(f"none of the {len(lay.records)} images of {root} could be prepared "
                        f"({', '.join(f'{n} {k}' for k, n in report.skipped.items())}); see {out / 'skipped.csv'}")
    listing = io.StringIO()
    csv.writer(listing, lineterminator="\n").writerows(
        [["name", "reason", "detail"], *skipped,
         *((ex, reason, "") for reason, examples in lay.examples.items() for ex in examples)])
    atomic_write_text(out / "skipped.csv", listing.getvalue())
    atomic_write_text(out / "factors.json", schema_to_json(lay.factors))
    atomic_write_text(out / "metadata.csv", text)
    return report
