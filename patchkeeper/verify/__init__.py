"""Stage 8 of the pipeline: prove an overlay against the protocol Claude Code speaks."""
