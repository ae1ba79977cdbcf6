"""Mesh model families (issue 17): the landmark-guided mesh decoder Z2 (Zou thesis §3.4.3, §3.7)
and its baselines."""

from mien.models.mesh.decoder import MeshDecoder, MeshDecoderConfig

__all__ = ["MeshDecoder", "MeshDecoderConfig"]
