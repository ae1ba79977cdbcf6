"""Data: the procedural face world, image folders and public layouts (design.md, data flow)."""
