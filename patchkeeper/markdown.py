"""Untrusted text in GitHub-flavoured Markdown: PR bodies, issues and job summaries.

Upstream paths, PR titles, server replies and error messages are shown as written and
never become markup: `text` is for one line (a table cell or inline prose), `fence` for
a block of preformatted lines. Neither lets the text add headings, HTML, links, images,
table cells, `@mentions` or `#123` references, nor control characters that a terminal
would act on when the same Markdown is printed.
"""

from __future__ import annotations

import re

# U+2060 WORD JOINER: invisible, and it breaks GitHub's mention and autolink patterns.
JOINER = "\u2060"

# Every line ending CommonMark or Unicode knows: folded to a space in inline text.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x85\u2028\u2029]")
# C0 and C1 controls (tab aside) and DEL: shown as \xNN, never sent to a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What GitHub turns into a mention, a reference or a link inside plain text.
_AUTOLINK = re.compile(r"@|#(?=\d)|:(?=//)|(?<![a-z0-9])www(?=\.)", re.IGNORECASE)
# ASCII punctuation: CommonMark lets a backslash escape each one, and only these.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_BACKTICKS = re.compile(r"`+")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match[0]):02x}"


def text(value: str) -> str:
    """`value` as literal inline Markdown, safe in a table cell: one line, no markup."""
    line = _CONTROL.sub(_visible, _LINE_BREAK.sub(" ", value))
    inert = _AUTOLINK.sub(lambda m: m[0] + JOINER, line)
    return _PUNCTUATION.sub(r"\\\1", inert)


def fence(value: str) -> str:
    """`value` as a fenced code block: its lines verbatim, longer backtick runs inside
    cannot close it, control characters shown as \\xNN."""
    lines = _CONTROL.sub(_visible, _LINE_BREAK.sub("\n", value))
    longest = max((len(run) for run in _BACKTICKS.findall(lines)), default=0)
    marker = "`" * max(3, longest + 1)
    return f"{marker}\n{lines}\n{marker}"
