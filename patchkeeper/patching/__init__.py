"""Stages 5-6 of the pipeline: parse untrusted diffs and port only the missing hunks."""
