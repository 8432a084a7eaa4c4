"""Dagster code location: every step of the spine as assets, assembled in `definitions.py`."""
