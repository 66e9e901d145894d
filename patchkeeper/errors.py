"""Errors that each carry one of the documented exit codes (several share one), and the
redaction every message, log line and report goes through.

Exit codes (the CLI contract): 0 ok; 1 a patch does not apply, or a smoke, verify
or doctor check failed; 2 bad input (config, arguments, malformed or unsafe diff or
image content, an unusable output location); 3 upstream, registry or daemon
unreachable; 70 an unexpected error, i.e. a bug in patchkeeper (sysexits'
EX_SOFTWARE; the traceback goes to a log file); 130 interrupted.
"""

from __future__ import annotations

import os
import re

EXIT_OK = 0
EXIT_CONFLICT = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

# scheme://USERINFO@host: greedy up to the last `@` before the path, so a password
# holding an unencoded `@` is removed whole.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@(?=[^@/\s]*(?:[/\s]|$))")
# Every GitHub token family: ghp_ (classic PAT), gho_ (OAuth), ghu_ (user-to-server),
# ghs_ (server-to-server, GITHUB_TOKEN), ghr_ (refresh), github_pat_ (fine-grained).
_TOKEN = re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b")
# Credentials in a query string (`?access_token=...`, `&private_token=...`, `&sig=...`).
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[A-Za-z0-9_.-]*(?:token|password|passwd|secret|key|sig|signature|auth)"
    r"[A-Za-z0-9_.-]*)=)[^&#\s\"']+",
    re.IGNORECASE,
)
# A credential after an auth scheme or a `token` word: old 40-hex OAuth and
# GitHub Enterprise tokens have no prefix, so the context is what identifies them.
_AUTH_VALUE = re.compile(
    r"(?P<key>\b(?:authorization:\s*)?(?:token|bearer|basic)[\s:=]+)[A-Za-z0-9+/._~=-]{16,}",
    re.IGNORECASE,
)
# Variables whose values are secrets wherever they turn up (echoed by an API, say).
SECRET_VARIABLES = ("GITHUB_TOKEN", "GH_TOKEN", "PATCHKEEPER_REGISTRY_PASSWORD")
_registered: set[str] = set()


def register_secret(value: str) -> None:
    """Redact `value` from every later message (credentials read from files, say)."""
    if len(value) >= 8:  # shorter strings would redact ordinary words
        _registered.add(value)


def _known_secrets() -> list[str]:
    values = {os.environ.get(name, "") for name in SECRET_VARIABLES} | _registered
    return sorted((v for v in values if len(v) >= 8), key=len, reverse=True)


def redact(text: str) -> str:
    """Remove credentials: known secret values, URL userinfo and query credentials,
    anything shaped like a GitHub token, and values after `token`/`Bearer`/`Basic`."""
    for secret in _known_secrets():
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRET.sub(r"\g<key>***", text)
    text = _TOKEN.sub("***", text)
    return _AUTH_VALUE.sub(r"\g<key>***", text)


class PatchkeeperError(Exception):
    """Base class: carries the exit code the CLI returns for it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ConfigError(PatchkeeperError):
    """A recipe or patchset file is missing, malformed or invalid."""


class OutputError(PatchkeeperError):
    """An output location cannot be written (read-only, full, not a directory)."""


class UnsafeInputError(PatchkeeperError):
    """An upstream diff or image entry tries to escape or is not plain text."""


class UpstreamError(PatchkeeperError):
    """The upstream repository does not have what a patchset asks for."""


class ImageError(PatchkeeperError):
    """The image is missing something sync needs (source root, git metadata)."""


class UnreachableError(PatchkeeperError):
    """The upstream remote, the registry or the Docker daemon cannot be reached."""

    exit_code = EXIT_UNREACHABLE


class ServerError(PatchkeeperError):
    """The server under verification exited or never became healthy: a failed check."""

    exit_code = EXIT_CONFLICT


class DriftError(PatchkeeperError):
    """The image about to run does not hold the vanilla files its overlay was made from."""
