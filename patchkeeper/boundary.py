"""The one error boundary every command runs inside (as pre-commit's error_handler).

- A `PatchkeeperError` is expected: its message, its documented exit code.
- A usage error (unknown option, bad choice) exits 2 with click's message.
- Anything else is a bug: exit 70, a one-line message, and the traceback in a log
  file under the user log dir, whose path is printed.
- With `--json` anywhere on the command line, each of these is one versioned JSON
  document on stdout instead, so a script never has to parse a human message.
Every message and the log pass through `redact`.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typer import Abort, TyperException
from typer.core import TyperGroup

from patchkeeper import __version__
from patchkeeper.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    PatchkeeperError,
    redact,
)
from patchkeeper.paths import log_dir
from patchkeeper.ui import log, plain, versioned


def json_requested(args: Sequence[str]) -> bool:
    """`--json` before any `--` (after it, arguments are data)."""
    head = list(args)
    if "--" in head:
        head = head[: head.index("--")]
    return "--json" in head


def report(message: str, code: int, as_json: bool, **extra: Any) -> int:
    """Print one error (JSON on stdout, or one red line on stderr); return `code`."""
    message = redact(message)
    if as_json:
        doc = versioned("error", {"error": message, "exit_code": code, **extra})
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stderr.write(f"error: {plain(message)}\n")  # printed even under -q
    return code


def crash_log(error: BaseException, args: Sequence[str]) -> Path | None:
    """Write the traceback and what ran to a new log file; None when that fails too."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    text = "\n".join(
        [
            f"patchkeeper {__version__} on Python {platform.python_version()} ({sys.platform})",
            "command: patchkeeper " + " ".join(args),
            "",
            *traceback.format_exception(error),
        ]
    )
    try:
        path = log_dir() / f"crash-{stamp}-{id(error):x}.log"
        path.write_text(redact(text), encoding="utf-8")
    except OSError:
        return None
    return path


def bug(error: BaseException, args: Sequence[str]) -> tuple[str, Path | None]:
    """An unexpected error as one line that says it is a bug, and its crash log."""
    path = crash_log(error, args)
    where = f"traceback in {path}" if path else "and the log could not be written"
    headline = str(error).splitlines()[0] if str(error) else ""
    message = (
        f"unexpected {type(error).__name__}{': ' + headline if headline else ''} "
        f"(a bug in patchkeeper; please report it; {where})"
    )
    log.debug("unexpected error", exc_info=error)
    return redact(message), path


def internal(error: BaseException, args: Sequence[str], as_json: bool) -> int:
    message, path = bug(error, args)
    return report(message, EXIT_INTERNAL, as_json, log=str(path) if path else None)


def run_guarded(group: TyperGroup, args: Sequence[str], **extra: Any) -> int:
    """Run the command line; return its exit code, whatever happens inside."""
    as_json = json_requested(args)
    try:
        # Typer's own main, not standalone: errors come back here instead of exiting.
        code = TyperGroup.main(group, list(args), standalone_mode=False, **extra)
    except PatchkeeperError as err:
        return report(str(err), err.exit_code, as_json)
    except TyperException as err:  # usage errors: unknown option, bad choice, missing value
        show = getattr(err, "show", None)
        if as_json or show is None:
            return report(err.format_message(), err.exit_code, as_json)
        show()
        return err.exit_code
    except (Abort, KeyboardInterrupt):
        return report("interrupted", EXIT_INTERRUPTED, as_json)
    except Exception as err:
        return internal(err, args, as_json)
    return code if isinstance(code, int) else 0


class GuardedGroup(TyperGroup):
    """The top-level group: `main` runs every command inside `run_guarded`."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        code = run_guarded(self, argv, prog_name=prog_name, complete_var=complete_var, **extra)
        if standalone_mode:
            sys.exit(code)
        return code
