"""The resumable training state ``state/last.ckpt`` (design.md, Checkpoints).

Lightning reads and writes it through :class:`StateIO`: reading always uses torch's safe
(weights-only) unpickler, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says, so a planted
pickle never runs; writing goes to a temp file in the state folder itself, synced and renamed
(:func:`mien.io.atomic_write_with`), so a full disk or a kill leaves the previous state whole.
A corrupt, truncated or hostile file is one :class:`~mien.errors.DataError`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mien.errors import DataError
from mien.io import atomic_write_with, ensure_writable_dir

_START_OVER = ("start a new run with another --out (train.init_from=FOLDER keeps the weights of its "
               "model.safetensors)")


def read_state(path, map_location=None) -> dict:
    """The training state at ``path``, loaded without running any code stored in it."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):  # torch writes zip archives; anything else is damaged
        raise DataError(f"{path} is corrupt or truncated (not a torch checkpoint archive); {_START_OVER}")
    try:
        with path.open("rb") as f:
            state = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(f"{path} holds objects other than tensors and numbers, which could run code; mien "
                        f"does not load it: {_START_OVER}") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, IndexError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path} is corrupt or truncated ({reason[:120]}); {_START_OVER}") from None
    if not isinstance(state, dict) or not isinstance(state.get("mien"), dict):
        raise DataError(f"{path} is not the training state of a mien run; {_START_OVER}")
    return state


class StateIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O for the training state: safe loading, atomic synced saving."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
        path = Path(path)
        ensure_writable_dir(path.parent)
        atomic_write_with(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Read ``path`` with the weights-only unpickler (``weights_only`` is ignored: always safe)."""
        return read_state(path, map_location)
