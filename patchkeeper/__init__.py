"""patchkeeper: keep local patches on top of nightly LLM-server images."""

__version__ = "0.1.0"
