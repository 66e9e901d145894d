"""`upstream.branch` becomes a refspec: it is checked as git checks branch names, as config."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from patchkeeper.cli import app
from patchkeeper.config.models import Upstream

ROOT = Path(__file__).resolve().parents[2]


def _git_accepts(name: str) -> bool:
    """git's own rule for a branch name (`--branch` refuses a leading `-` and a bare `@`)."""
    done = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True, check=False
    )
    return done.returncode == 0 and not name.startswith("-") and name != "@"


@pytest.mark.parametrize(
    "branch", ["*", "main:evil", "a..b", "-x", "x.lock", ".hidden", "a//b", "a/", "a b", "@{u}"]
)
def test_a_branch_git_would_refuse_is_a_config_error(branch: str) -> None:
    assert not _git_accepts(branch)
    with pytest.raises(ValidationError, match="not a valid branch name"):
        Upstream(git="https://example.com/r.git", branch=branch)


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(exclude_characters="\x00"), max_size=20)
    | st.from_regex(r"[a-z./@{:*-]{1,8}", fullmatch=True)
)
def test_branch_names_are_judged_as_git_judges_them(name: str) -> None:
    try:
        Upstream(git="https://example.com/r.git", branch=name)
    except ValidationError:
        assert not _git_accepts(name) or not name
    else:
        assert _git_accepts(name)


def test_validate_names_the_branch_field_and_exits_2(tmp_path: Path) -> None:
    shutil.copy(ROOT / "recipes" / "cpu-tiny-mtp.yaml", tmp_path / "recipe.yaml")
    (tmp_path / "recipe.yaml").write_text(
        (tmp_path / "recipe.yaml").read_text().replace("../patchsets/", "")
    )
    patchset = (ROOT / "patchsets" / "sglang-claude-code.yaml").read_text()
    (tmp_path / "sglang-claude-code.yaml").write_text(
        patchset.replace("branch: main", "branch: '*'")
    )
    done = CliRunner().invoke(app, ["validate", str(tmp_path / "recipe.yaml"), "--json"])
    assert done.exit_code == 2
    messages = [p["message"] for p in json.loads(done.stdout)["problems"]]
    assert any("branch" in m and "'*' is not a valid branch name" in m for m in messages), messages
