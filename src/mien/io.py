"""Safe output: atomic file writes and writable-folder checks (design.md, Conventions).

Every write goes to a hidden temp file in the target's folder (the same file system), is flushed
to disk (``fsync``) and moved into place with ``os.replace``, then the folder itself is synced, so
a reader sees either the old file or the new one, never half of one, even after a power loss. Any
``OSError`` becomes an :class:`~mien.errors.OutputError` that names the path and the fix; the
temp file is removed on every failure, interruptions included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

from PIL import Image

from mien.errors import DataError, OutputError


def _reason(path: Path, e: OSError) -> str:
    """One line saying why ``path`` could not be written and what to do."""
    if e.errno == errno.ENOSPC:
        return f"cannot write {path}: disk full: free space or choose another --out"
    if isinstance(e, PermissionError) or e.errno == errno.EROFS:
        return (
            f"cannot write {path}: permission denied or read-only file system; "
            "choose another --out or fix its permissions"
        )
    return f"cannot write {path} ({e.strerror or e}); choose another --out"


def cache_dir(name: str) -> Path:
    """mien's cache folder ``name`` (world renders, mesh hierarchies): ``$MIEN_CACHE/<name>``, by
    default ``~/.cache/mien/<name>``. Everything in it can be deleted; it is rebuilt on use."""
    return Path(os.environ.get("MIEN_CACHE") or Path.home() / ".cache" / "mien") / name


def ensure_writable_dir(path) -> Path:
    """Create folder ``path`` (and its parents) and check that files can be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".mien-probe-{secrets.token_hex(4)}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as e:
        raise OutputError(_reason(path, e)) from None
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temp file beside ``path``, sync it, then move it onto ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with mode 0o666 honours the umask, unlike tempfile's private 0o600 files.
        with os.fdopen(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(_reason(path, e)) from None
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temps(folder) -> None:
    """Remove the temp files that :func:`atomic_write_with` left in ``folder`` when its process was
    killed before the rename (call only while no write into ``folder`` is under way)."""
    for p in Path(folder).glob(".*.tmp"):
        if re.fullmatch(r"\..+\.[0-9a-f]{8}\.tmp", p.name) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_png(image: Image.Image, path) -> Path:
    """Save a PIL image as PNG to ``path`` atomically."""
    return atomic_write_with(path, lambda f: image.save(f, format="PNG"))


INCOMPLETE = ".mien-incomplete"  # present in a folder while (or because) its writing did not finish


def is_incomplete(folder) -> bool:
    """Whether ``folder`` is an output whose writing was interrupted (or is still going on)."""
    return (Path(folder) / INCOMPLETE).exists()


@contextlib.contextmanager
def claim_folder(folder):
    """Hold ``folder`` exclusively while a set of files is written into it.

    The marker ``INCOMPLETE`` is created and locked (``flock``, released by the system if the
    process dies); a second writer finds it locked and gets an :class:`OutputError`. The marker is
    removed only when the body finishes, so an interrupted set of files stays recognisable as
    incomplete (:func:`is_incomplete`)."""
    folder = ensure_writable_dir(folder)
    marker = folder / INCOMPLETE
    fd = _locked_marker(marker)
    try:
        yield folder
        marker.unlink(missing_ok=True)
        _fsync_dir(folder)
    finally:
        os.close(fd)


def _locked_marker(marker: Path) -> int:
    """Open (creating) ``marker`` and take its exclusive lock, or raise :class:`OutputError`."""
    import fcntl

    busy = OutputError(f"another mien process is writing {marker.parent}; wait for it to finish or "
                       "choose another --out")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_RDWR, 0o666)
    except OSError as e:
        raise OutputError(_reason(marker, e)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(marker).st_ino:  # the holder finished and removed it meanwhile
            raise BlockingIOError
    except OSError:
        os.close(fd)
        raise busy from None
    return fd


def check_output_path(path, folder: bool | None = None) -> Path:
    """Refuse, before any work, an output that cannot be written: a folder given for a file
    (``folder=False``), a file given for a folder (``folder=True``; None: either), a location under
    a file, or one whose nearest existing folder is not writable. Nothing is created."""
    path = Path(path)
    if folder is True and path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file, not a folder; choose another --out")
    if folder is False and path.is_dir():
        raise OutputError(f"{path} is a folder; give --out a file name")
    base = path if path.is_dir() else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"cannot write {path}: {base} is a file, not a folder; choose another --out")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(_reason(path, PermissionError(errno.EACCES, "Permission denied")))
    return path


def read_tensor_files(folder, name: str, fmt: str, writer: str):
    """(tensors, sidecar) of ``<name>.safetensors`` + ``<name>.json`` in ``folder`` whose sidecar
    has ``"format": fmt``, never unpickled; a missing, corrupt or foreign pair is one DataError
    naming ``writer`` (the command that writes it)."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        info = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / f"{name}.safetensors"))
    except FileNotFoundError as e:
        raise DataError(f"{e.filename} does not exist; pass a folder written by `{writer}`") from None
    except (json.JSONDecodeError, SafetensorError, OSError, ValueError):
        raise DataError(f"{folder} holds corrupt {name} files; run `{writer}` again") from None
    if not isinstance(info, dict) or info.get("format") != fmt:
        raise DataError(f"{folder / (name + '.json')} is not a {fmt} file; run `{writer}` again")
    return tensors, info
