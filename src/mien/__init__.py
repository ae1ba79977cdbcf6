"""mien: controllable deep generative models of faces and facial expressions."""

__version__ = "0.1.0"


def load(ckpt_dir, device="cpu"):
    """Rebuild any model from a mien checkpoint folder (model.safetensors + config.yaml + meta.json)."""
    from mien.models.checkpoint import load as _load

    return _load(ckpt_dir, device)


def __getattr__(name):
    if name == "world":
        from mien.data import world

        return world
    raise AttributeError(f"module 'mien' has no attribute {name!r}")
