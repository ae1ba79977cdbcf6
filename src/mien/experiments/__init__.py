"""Experiments: the demo and one module per source-document table, reproduced on the world (design.md)."""
