"""Three-way porting of real PRs: the base commit's alignment decides, never distance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from patchkeeper.demo.history import Edit
from patchkeeper.patching.hunks import HunkStatus
from patchkeeper.patching.port import FileAction, PatchState, port
from tests.patching.conftest import ROOT, PrHistory, image, local, merge_file

MakeUpstream = Callable[[dict[str, bytes]], PrHistory]

BLOCK = (
    "    out = call(\n        text=text,\n        stream=stream,\n        max_tokens=max_tokens,\n"
    "        top_p=top_p,\n        top_k=top_k,\n    )\n    return out\n"
)
SERVER = (
    '"""Server."""\n\n'
    + "".join(f"# note {i}\n" for i in range(12))
    + "\n\ndef generate(text, stream):\n"
    + BLOCK
    + "\n\nasync def async_generate(text, stream):\n"
    + BLOCK
)
SESSION = Edit(
    "server.py",
    "def generate(text, stream):\n    out = call(\n        text=text,\n        stream=stream,\n",
    "def generate(text, stream):\n    out = call(\n        text=text,\n        stream=stream,\n"
    "        session_id=None,\n",
)


def test_the_identical_block_goes_into_the_function_the_pr_changed(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    """The image lost the notes above `generate`, so `async_generate`'s identical block now
    sits nearer the diff's line numbers: the nearest-copy rule patched the wrong function."""
    up = make_upstream({"server.py": SERVER.encode()})
    up.history.squash_pr(1, "Session ids", [SESSION])
    ours = SERVER.replace("".join(f"# note {i}\n" for i in range(12)), "").encode()
    result = up.port([1], {"server.py": ours})
    [outcome] = result.outcomes
    assert outcome.state is PatchState.APPLIED
    [hunk] = outcome.files[0].hunks
    assert (hunk.status, hunk.line) == (HunkStatus.APPLIED, 6)  # its context, moved up
    patched = result.current[ROOT / "server.py"]
    assert patched is not None
    generate, async_generate = patched.decode().split("async def")
    assert "session_id=None" in generate and "session_id=None" not in async_generate
    base, theirs = up.file_at("HEAD~1", "server.py"), up.file_at("HEAD", "server.py")
    assert (patched, 0) == merge_file(ours, base, theirs, tmp_path)
    # The same diff with its blobs unknown: two copies of the block are a conflict.
    [exact] = port([local(up.change(1))], image({"server.py": ours})).outcomes
    assert exact.state is PatchState.CONFLICT
    assert "occurs more than once" in exact.files[0].hunks[0].reason


def test_exact_when_the_image_is_the_base_and_present_when_it_is_the_result(
    make_upstream: MakeUpstream,
) -> None:
    up = make_upstream({"server.py": SERVER.encode()})
    up.history.squash_pr(1, "Session ids", [SESSION])
    base, theirs = up.file_at("HEAD~1", "server.py"), up.file_at("HEAD", "server.py")
    [applied] = up.port([1], {"server.py": base}).outcomes
    assert applied.state is PatchState.APPLIED
    assert [(h.status, h.line) for h in applied.files[0].hunks] == [(HunkStatus.APPLIED, 18)]
    [present] = up.port([1], {"server.py": theirs}).outcomes
    assert present.state is PatchState.UPSTREAM and present.via == "content"
    assert [(h.status, h.line) for h in present.files[0].hunks] == [(HunkStatus.PRESENT, 18)]


def test_old_and_new_block_both_present_at_equal_distance(make_upstream: MakeUpstream) -> None:
    """The image already changed `generate`'s copy; the PR changes `async_generate`'s. Exact
    matching sees the old block once and the new block once, equally far: a coin toss."""
    up = make_upstream({"server.py": SERVER.encode()})
    head = "    out = call(\n        text=text,\n        stream=stream,\n"
    old, new = "        max_tokens=max_tokens,\n", "        max_tokens=None,\n"
    async_def = "async def async_generate(text, stream):\n"
    up.history.squash_pr(
        1, "Unbounded async", [Edit("server.py", async_def + head + old, async_def + head + new)]
    )
    ours = SERVER.replace(
        "def generate(text, stream):\n" + head + old, "def generate(text, stream):\n" + head + new
    ).encode()
    result = up.port([1], {"server.py": ours})
    [outcome] = result.outcomes
    assert outcome.state is PatchState.APPLIED
    patched = result.current[ROOT / "server.py"]
    assert patched is not None and patched.decode().count("max_tokens=None") == 2
    [exact] = port([local(up.change(1))], image({"server.py": ours})).outcomes
    assert exact.state is PatchState.CONFLICT
    assert "holds both" in exact.files[0].hunks[0].reason


def test_context_edited_by_unrelated_commits_is_applied_with_drift(
    make_upstream: MakeUpstream, tmp_path: Path
) -> None:
    """An earlier hunk's size change plus a decoy copy of the second hunk's block: the base's
    alignment places both hunks, and reports the one whose context changed as drift."""
    lines = "".join(f"line {i}\n" for i in range(40))
    up = make_upstream({"mod.py": lines.encode()})
    up.history.squash_pr(
        1,
        "Two hunks",
        [
            Edit("mod.py", "line 3\n", "line 3\nadded a\nadded b\nadded c\n"),
            Edit("mod.py", "line 30\n", "line 30 changed\n"),
        ],
    )
    decoy = "line 28\nline 29\nline 30\nline 31\nline 32\nline 33\n"
    ours = (
        lines.replace("line 6\n", "line 6 edited\n").replace("line 10\n", decoy + "line 10\n")
    ).encode()
    result = up.port([1], {"mod.py": ours})
    [outcome] = result.outcomes
    assert outcome.state is PatchState.APPLIED and outcome.count(HunkStatus.DRIFTED) == 1
    first, second = outcome.files[0].hunks
    assert (first.status, first.line) == (HunkStatus.DRIFTED, 5)
    assert (second.status, second.line) == (HunkStatus.APPLIED, 34)
    patched = result.current[ROOT / "mod.py"]
    assert patched is not None
    text = patched.decode()
    assert text.count("line 30 changed") == 1 and text.index("line 30 changed") > text.index(
        "line 10\n"
    )
    base, theirs = up.file_at("HEAD~1", "mod.py"), up.file_at("HEAD", "mod.py")
    assert (patched, 0) == merge_file(ours, base, theirs, tmp_path)
    [exact] = port([local(up.change(1))], image({"mod.py": ours})).outcomes
    assert exact.state is PatchState.CONFLICT  # no guessing between the decoy and the original


def test_a_conflicting_file_gets_diff3_markers_and_nothing_is_written(
    make_upstream: MakeUpstream,
) -> None:
    pad = b"".join(b"pad %d\n" % i for i in range(8))
    up = make_upstream({"a.py": b"x = 1\ny = 2\nz = 3\n", "b.py": b"keep\n" + pad + b"old\n"})
    up.history.squash_pr(
        1, "Two files", [Edit("b.py", "old\n", "new\n"), Edit("a.py", "y = 2\n", "y = 20\n")]
    )
    up.history.squash_pr(2, "Later on b", [Edit("b.py", "keep\n", "keep it\n")])
    vanilla = {"a.py": b"x = 1\ny = 3\nz = 3\n", "b.py": b"keep\n" + pad + b"old\n"}
    result = up.port([1, 2], vanilla)
    first, second = result.outcomes
    assert first.state is PatchState.CONFLICT
    conflicting = next(f for f in first.files if f.action is FileAction.CONFLICT)
    assert conflicting.path == ROOT / "a.py"
    [hunk] = conflicting.hunks
    assert hunk.status is HunkStatus.CONFLICT and "image changed lines 2-2" in hunk.reason
    assert "<<<<<<< image /src/a.py" in conflicting.marked
    assert "||||||| base " in conflicting.marked and ">>>>>>> ps/PR #1" in conflicting.marked
    # The refused change left no trace: PR 2 ported onto b.py as the image has it.
    assert second.state is PatchState.APPLIED
    assert result.current[ROOT / "b.py"] == b"keep it\n" + pad + b"old\n"


def test_a_hunk_the_image_already_has_is_present_among_drift(make_upstream: MakeUpstream) -> None:
    """A cherry-pick of the first hunk, plus unrelated edits: the rest ports, `partial`."""
    lines = "".join(f"line {i}\n" for i in range(40))
    up = make_upstream({"mod.py": lines.encode()})
    up.history.squash_pr(
        1,
        "Two hunks",
        [Edit("mod.py", "line 5\n", "line five\n"), Edit("mod.py", "line 30\n", "line thirty\n")],
    )
    ours = lines.replace("line 5\n", "line five\n").replace("line 15\n", "line 15 edited\n")
    result = up.port([1], {"mod.py": ours.encode()})
    [outcome] = result.outcomes
    assert outcome.state is PatchState.PARTIAL
    assert [(h.status, h.line) for h in outcome.files[0].hunks] == [
        (HunkStatus.PRESENT, 6),
        (HunkStatus.APPLIED, 28),
    ]
    assert result.changed_files() == {
        ROOT / "mod.py": ours.replace("line 30\n", "line thirty\n").encode()
    }
