"""mien: controllable deep generative models of faces and facial expressions."""

__version__ = "0.1.0"
