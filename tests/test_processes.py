"""Rows and folds in spawned processes: an interrupt stops the pieces not yet started."""

from pathlib import Path

import pytest

from mien.experiments.processes import in_processes


def _write_or_interrupt(path: Path, interrupt: bool) -> str:
    if interrupt:
        raise KeyboardInterrupt  # what a piece's training raises on Ctrl-C, after its checkpoint
    path.write_text("ran")
    return path.name


def test_an_interrupted_piece_stops_every_piece_not_yet_started(tmp_path):
    assert in_processes(_write_or_interrupt, {"first": (tmp_path / "first", False)}, 1) == {"first": "first"}
    calls = {"a": (tmp_path / "a", True), **{n: (tmp_path / n, False) for n in "bcde"}}
    with pytest.raises(KeyboardInterrupt):
        in_processes(_write_or_interrupt, calls, 1)
    # the pool had handed b to the worker before the caller saw the interrupt; it is refused there
    assert not [n for n in "bcde" if (tmp_path / n).exists()]
