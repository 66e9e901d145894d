"""Stage 7 of the pipeline: immutable per-image overlays, their lock and compose files."""
