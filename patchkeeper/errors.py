"""Errors that map one-to-one onto the documented exit codes.

Exit codes (the CLI contract): 0 ok; 1 a patch does not apply, or a smoke or
verify check failed; 2 bad input (config, arguments, malformed or unsafe diff or
image content); 3 upstream, registry or daemon unreachable.
"""

from __future__ import annotations

import re

EXIT_OK = 0
EXIT_CONFLICT = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_TOKEN = re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b")


def redact(text: str) -> str:
    """Remove credentials from URLs and anything shaped like a GitHub token."""
    return _TOKEN.sub("***", _USERINFO.sub(r"\g<scheme>***@", text))


class PatchkeeperError(Exception):
    """Base class: carries the exit code the CLI returns for it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ConfigError(PatchkeeperError):
    """A recipe or patchset file is missing, malformed or invalid."""


class UnsafeInputError(PatchkeeperError):
    """An upstream diff or image entry tries to escape or is not plain text."""


class UpstreamError(PatchkeeperError):
    """The upstream repository does not have what a patchset asks for."""


class ImageError(PatchkeeperError):
    """The image is missing something sync needs (source root, git metadata)."""


class ConflictError(PatchkeeperError):
    """A patch does not apply to the image's files."""

    exit_code = EXIT_CONFLICT


class UnreachableError(PatchkeeperError):
    """The upstream remote, the registry or the Docker daemon cannot be reached."""

    exit_code = EXIT_UNREACHABLE


class ServerError(PatchkeeperError):
    """The server under verification exited or never became healthy: a failed check."""

    exit_code = EXIT_CONFLICT


class DriftError(PatchkeeperError):
    """The image about to run does not hold the vanilla files its overlay was made from."""
