from pathlib import Path, PurePosixPath

from patchkeeper.config.models import Patch
from patchkeeper.patching.port import FileAction, ParsedChange, PatchState, port
from patchkeeper.upstream.model import PrState, UpstreamChange

ROOT = PurePosixPath("/src")


def change(key: str, diff: str, exclude: tuple[str, ...] = ()) -> ParsedChange:
    patch = Patch(diff=Path(f"{key}.diff"), why="test", exclude=exclude)
    return ParsedChange.of(UpstreamChange("ps", patch, PrState.LOCAL, diff), ROOT)


def modify(path: str, old: str, new: str, context: str = "ctx\n") -> str:
    return (
        f"--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n"
        + "".join(f" {c}\n" for c in context.splitlines())
        + f"-{old}\n+{new}\n"
    )


def test_two_changes_on_one_file_apply_in_order() -> None:
    vanilla = {ROOT / "f.py": b"ctx\nv1\n"}
    result = port(
        [change("one", modify("f.py", "v1", "v2")), change("two", modify("f.py", "v2", "v3"))],
        vanilla,
    )
    assert [o.state for o in result.outcomes] == [PatchState.APPLIED, PatchState.APPLIED]
    assert result.changed_files() == {ROOT / "f.py": b"ctx\nv3\n"}


def test_a_change_touching_two_files_ports_both() -> None:
    vanilla = {ROOT / "schema.py": b"ctx\nold\n", ROOT / "template.py": b"ctx\nold\n"}
    diff = modify("schema.py", "old", "new") + modify("template.py", "old", "new")
    result = port([change("fix", diff)], vanilla)
    assert set(result.changed_files()) == {ROOT / "schema.py", ROOT / "template.py"}


def test_a_file_absent_from_the_image_is_a_conflict_unless_excluded() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nold\n", ROOT / "test_a.py": None}
    diff = modify("a.py", "old", "new") + modify("test_a.py", "old", "new")
    [outcome] = port([change("fix", diff)], vanilla).outcomes
    assert outcome.state is PatchState.CONFLICT
    assert outcome.files[1].note == "absent from the image"
    [outcome] = port([change("fix", diff, exclude=("test_*",))], vanilla).outcomes
    assert outcome.state is PatchState.APPLIED
    assert outcome.files[1].action is FileAction.EXCLUDED


def test_partial_when_the_image_already_has_some_hunks() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nnew\n", ROOT / "b.py": b"ctx\nold\n"}
    diff = modify("a.py", "old", "new") + modify("b.py", "old", "new")
    [outcome] = port([change("fix", diff)], vanilla).outcomes
    assert outcome.state is PatchState.PARTIAL
    assert [f.action for f in outcome.files] == [FileAction.UNCHANGED, FileAction.PATCHED]


def test_everything_present_counts_as_upstream_by_content() -> None:
    vanilla = {ROOT / "a.py": b"ctx\nnew\n"}
    result = port([change("fix", modify("a.py", "old", "new"))], vanilla)
    assert result.outcomes[0].state is PatchState.UPSTREAM
    assert result.outcomes[0].via == "content"
    assert result.changed_files() == {}


def test_added_deleted_and_upstream_by_ancestry() -> None:
    added = "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+hello\n"
    deleted = "--- a/gone.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"
    vanilla = {ROOT / "new.py": None, ROOT / "gone.py": b"bye\n"}
    skipped = change("old", added)
    result = port(
        [change("add", added), change("del", deleted), skipped], vanilla, {skipped.change.id}
    )
    states = [o.state for o in result.outcomes]
    assert states == [PatchState.APPLIED, PatchState.UPSTREAM, PatchState.UPSTREAM]
    assert result.outcomes[1].files[0].action is FileAction.LEFT_IN_PLACE
    assert result.outcomes[2].via == "ancestry"
    assert result.changed_files() == {ROOT / "new.py": b"hello\n"}
