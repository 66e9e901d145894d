"""Untrusted text stays text in Markdown: checked by rendering with a real parser
(markdown-it-py, as GitHub: CommonMark with tables and strikethrough; its bare-URL and
mention autolinking runs on the rendered text, so that is checked with GitHub's patterns)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from patchkeeper.commands import nightly
from patchkeeper.commands.nightly import RecipeFailure, RecipeRun
from patchkeeper.markdown import JOINER, fence, text
from patchkeeper.overlay.lock import Lock
from patchkeeper.verify import reporting
from patchkeeper.verify.smoke import CheckResult, Status
from tests.overlay.locks import make_lock

md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
EXAMPLES = settings(max_examples=200, deadline=None)

# Pieces that mean something to Markdown, HTML or GitHub, mixed with any text at all.
HOSTILE = [
    "|", "\\", "\\|", "`", "```", "~~~", "*", "_", "[x](javascript:alert(1))", "![i](http://e/x)",
    "<img src=x onerror=alert(1)>", "</td>", "<!--", "&amp;", "&#124;", "@org/team", "@user",
    "a@b.co", "#123", "http://example.com", "https://", "www.example.com", "_www.e.com", "\n", "\r\n", "\r",
    "\u2028", "\x1b]0;title\x07", "\x1b[2J", "\x00", "# ", "- ", "1. ", "> ", "    ", "\t", ":",
    " ", "a", "~~", "<http://e.com>", "[ref]: http://e.com", "---", "===",
]  # fmt: skip
untrusted = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=3))).map("".join),
)
# Text without line breaks or control characters: what `text` must show unchanged.
printable = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters=JOINER)
)
# GitHub's mention and issue-reference patterns, and every autolink GFM knows.
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9]")
REFERENCE = re.compile(r"(?<![\w&])#\d")
URL = re.compile(r"://|(?<![a-z0-9])www\.", re.IGNORECASE)  # GFM: after _ * ~ ( too


def _cells(rendered: str) -> list[list[Token]]:
    """The inline children of every body cell of a one-column table holding `rendered`."""
    tokens = md.parse(f"| h |\n|---|\n| {rendered} |\n")
    assert [t.type for t in tokens if t.type in ("table_open", "tr_open")] == ["table_open"] + [
        "tr_open"
    ] * 2, "exactly one header row and one body row"
    body = tokens[[t.type for t in tokens].index("tbody_open") :]
    cells = [i for i, t in enumerate(body) if t.type == "td_open"]
    return [body[i + 1].children or [] for i in cells]


def _shown(children: list[Token]) -> str:
    assert {t.type for t in children} <= {"text", "softbreak"}, [t.type for t in children]
    return "".join(t.content for t in children)


@EXAMPLES
@given(untrusted)
@example("see _www.e.com or (www.x.org)")
def test_any_text_is_one_cell_with_no_html_link_image_or_mention(value: str) -> None:
    [cell] = _cells(text(value))
    shown = _shown(cell)  # no html_inline, link_open, image, code_inline, emphasis
    assert "\n" not in text(value) and "\r" not in text(value)
    assert not MENTION.search(shown) and not REFERENCE.search(shown)
    assert not URL.search(shown)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown)  # nothing a terminal obeys


@EXAMPLES
@given(printable)
def test_printable_text_renders_as_written(value: str) -> None:
    [cell] = _cells(text(value))
    assert _shown(cell).replace(JOINER, "") == value.strip()


@EXAMPLES
@given(untrusted)
def test_inline_text_adds_no_block_of_its_own(value: str) -> None:
    tokens = md.parse(f"note: {text(value)}\n")
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    _shown(tokens[1].children or [])


@EXAMPLES
@given(untrusted)
@example("log\n```\n# not a heading\n````")
def test_any_text_in_a_fence_is_one_code_block(value: str) -> None:
    tokens = md.parse(fence(value) + "\n\nafter\n")
    assert [t.type for t in tokens][:1] == ["fence"]
    assert [t.type for t in tokens[1:]] == ["paragraph_open", "inline", "paragraph_close"]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", tokens[0].content)


@EXAMPLES
@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")) | st.just("\n")))
def test_fenced_lines_are_kept_verbatim(value: str) -> None:
    [block] = md.parse(fence(value))
    assert block.type == "fence" and block.info == "" and block.content == value + "\n"


def test_the_issues_examples_stay_text() -> None:
    path = "@org/team <img src=x> [x](javascript:alert(1)).py"
    [cell] = _cells(text(path))
    assert _shown(cell).replace(JOINER, "") == path
    reason = "bad reply\n# Heading\n<b>bold</b> @team"
    rendered = md.render(f"note: {text(reason)}\n")
    assert "<h1>" not in rendered and "<b>" not in rendered and MENTION.search(rendered) is None
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered


def test_a_servers_reason_adds_nothing_to_the_step_summary() -> None:
    reason = "bad reply\n# Heading\n<b>bold</b> @team\n| x | y |\n```"
    results = [CheckResult("tool_stream_blocks", Status.FAILED, reason)]
    tokens = md.parse(reporting.markdown(results, "adapter @org/team <img src=x>"))
    assert [t.tag for t in tokens if t.type == "heading_open"] == ["h3"]
    assert [t.type for t in tokens if t.type in ("tr_open", "td_open")] == ["tr_open"] * 2 + [
        "td_open"
    ] * 3
    for token in tokens:
        if token.type == "inline":
            kinds = {c.type for c in token.children or []}
            assert not kinds & {"html_inline", "link_open", "image"}, kinds
            shown = "".join(c.content for c in token.children or [] if c.type == "text")
            assert not MENTION.search(shown), shown


def _lock(why: str, path: str, reason: str) -> Lock:
    """A conflicting patch whose why, path and hunk reason are `why`, `path` and `reason`."""
    hunk = {"header": "@@ -1 +1 @@", "status": "conflict", "line": None, "reason": reason}
    conflict = {"path": path, "kind": "modified", "action": "conflict", "hunks": [hunk]}
    patch = {
        "id": "set/pr-1", "patchset": "set", "pr": 1, "diff_file": None, "state": "conflict",
        "via": "", "pr_state": "open", "title": None, "why": why, "head": None, "witness": None,
        "merge_commit": None, "base": None, "diff_sha256": "d" * 64,
        "hunks": {"applied": 0, "present": 0, "conflict": 1}, "files": [conflict],
    }  # fmt: skip
    return make_lock("f" * 64, patches=[patch], warnings=[reason])


@settings(max_examples=100, deadline=None)
@given(untrusted, untrusted, untrusted, untrusted)
def test_the_nightly_report_keeps_every_untrusted_text_as_text(
    why: str, path: str, reason: str, error: str
) -> None:
    lock = _lock(why, path, reason)
    run = RecipeRun(Path("demo.yaml"), lock)
    failure = RecipeFailure(Path("other.yaml"), error, 2)
    body = nightly.report([run], [failure])
    tokens = md.parse(body)
    rows = [t for t in tokens if t.type == "tr_open"]
    cells = [t for t in tokens if t.type in ("th_open", "td_open")]
    # The night's table (a header, two rows of 4) and the plan's (a header, one row of 6).
    assert len(rows) == 5 and len(cells) == 4 * 3 + 6 * 2
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["patchkeeper nightly", "`other.yaml`", "`demo.yaml`"]
    for token in tokens:
        for child in [token, *(token.children or [])]:
            assert child.type not in ("html_inline", "html_block", "link_open", "image"), child
            if child.type == "text":
                assert not MENTION.search(child.content) and not URL.search(child.content)
    title, text = failure.issue()
    assert [t.type for t in md.parse(text)][3:] == ["fence"]  # one paragraph, one block
    assert "\n" not in title


@EXAMPLES
@given(untrusted)
@example("log\n````\n</details>\n# heading")
def test_server_logs_stay_one_collapsed_code_block(logs: str) -> None:
    tokens = md.parse(reporting.details("server logs", logs) + "\nafter\n")
    assert [t.type for t in tokens][:3] == ["html_block", "fence", "html_block"]
    assert tokens[2].content == "</details>\n"
