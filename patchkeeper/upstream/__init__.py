"""Stage 2 of the pipeline: from patch entries to concrete upstream changes."""

from patchkeeper.upstream.model import PrState, UpstreamChange, UpstreamResolver

__all__ = ["PrState", "UpstreamChange", "UpstreamResolver"]
