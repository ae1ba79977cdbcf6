"""Reusable network blocks shared by the model families."""
