"""Secrets patchkeeper knows by value (the environment's tokens and passwords, a
password read from Docker's config) are redacted in every way text leaves it: error
messages, the error boundary's human and JSON output, crash logs and log records."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from patchkeeper.boundary import GuardedGroup
from patchkeeper.errors import (
    SECRET_VARIABLES,
    UnreachableError,
    UpstreamError,
    redact,
    register_secret,
)
from patchkeeper.image.registry_access import credentials
from patchkeeper.ui import configure_logging


def fresh(length: int, first: str = "s") -> str:
    """A secret of exactly `length` characters no other text holds by chance."""
    return (first + uuid.uuid4().hex * 2)[:length]


@pytest.fixture(autouse=True)
def no_secrets_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which secret variables are set (CI may set GITHUB_TOKEN)."""
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def logged(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[str], str]]:
    """Log one INFO record through patchkeeper's handler; return what reached stderr."""
    configure_logging(1)

    def emit(message: str) -> str:
        logging.getLogger("patchkeeper.upstream.github").info("%s", message)
        return capsys.readouterr().err

    yield emit
    configure_logging(0)


def guarded_app(message: str, exception: type[Exception]) -> typer.Typer:
    """A two-command CLI behind the real error boundary whose `fail` raises `message`."""
    app = typer.Typer(cls=GuardedGroup)

    @app.command()
    def fail(
        as_json: bool = typer.Option(False, "--json"),
        token: str = typer.Option("", "--token"),
    ) -> None:
        raise exception(message)

    @app.command()
    def other() -> None:
        """Unused: two commands make a group, as the real CLI is."""

    return app


# --- which values count as secrets -------------------------------------------------


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_each_secret_variable_is_redacted_from_its_first_eight_characters(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = fresh(8)  # a short registry password has no token shape: only its value says
    monkeypatch.setenv(variable, secret)
    assert redact(f"login as bot:{secret} refused") == "login as bot:*** refused"


def test_a_value_shorter_than_eight_characters_is_not_treated_as_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "main")  # would otherwise redact a branch name
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_PASSWORD", "release")
    register_secret("nightly")
    text = "release nightly of main: 7 characters or fewer are ordinary words"
    assert redact(text) == text


def test_a_registered_secret_of_eight_characters_is_redacted() -> None:
    secret = fresh(8, first="r")
    register_secret(secret)
    assert redact(f"password {secret!r} rejected") == "password '***' rejected"


def test_a_secret_holding_another_is_removed_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # The shorter secret sorts last by text and first by length: either wrong order
    # would redact it inside the longer one and leave the longer one's ends behind.
    inner = fresh(10, first="z")
    outer = f"aa-{inner}-tail"
    monkeypatch.setenv("PATCHKEEPER_REGISTRY_PASSWORD", inner)
    monkeypatch.setenv("GH_TOKEN", outer)
    assert redact(f"echoed {outer} and {inner}") == "echoed *** and ***"
    register_secret(f"bb-{inner}-end")
    assert redact(f"[bb-{inner}-end]") == "[***]"


def test_the_password_from_dockers_config_is_redacted_once_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATCHKEEPER_REGISTRY_USERNAME", raising=False)
    password = "Tr0ub4dor&3-" + uuid.uuid4().hex[:8]  # no token shape, no context word
    registry = "registry.example.test:5000"
    auth = base64.b64encode(f"bot:{password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert redact(f"echo {password}") == f"echo {password}"  # unknown until read

    assert credentials(registry) == ("bot", password)
    assert redact(f"401 for bot/{password} at {registry}") == f"401 for bot/*** at {registry}"
    assert password not in str(UnreachableError(f"{registry}: bad password {password}"))


# --- every GitHub token family and credential shape, through the error classes ---------


BODY = "Zq9" * 12  # 36 characters, as GitHub issues them


@pytest.mark.parametrize(
    "token",
    [
        *(prefix + BODY for prefix in ("ghp_", "gho_", "ghs_", "ghu_", "ghr_")),
        "github_pat_11ABCDEFG0" + "x" * 20 + "_" + "Y" * 59,
    ],
)
def test_every_token_family_is_redacted_from_an_error_message(token: str) -> None:
    message = str(UpstreamError(f"GET /repos/o/r/pulls/7 -> 401 ({token})"))
    assert message == "GET /repos/o/r/pulls/7 -> 401 (***)"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "clone https://git.example.com/o/r.git?access_token=abc123xyz failed",
            "clone https://git.example.com/o/r.git?access_token=*** failed",
        ),
        (
            "clone https://h/o/r.git?ref=main&private_token=abc&x=1 failed",
            "clone https://h/o/r.git?ref=main&private_token=***&x=1 failed",
        ),
        (
            "fetch https://bot:p@ss@w0rd@git.example.com/o/r.git failed",
            "fetch https://***@git.example.com/o/r.git failed",
        ),
        (
            "Authorization: Bearer 0123456789abcdef0123456789abcdef01234567",
            "Authorization: Bearer ***",
        ),
        (
            "github said: token 0123456789abcdef0123456789abcdef01234567 revoked",
            "github said: token *** revoked",
        ),
    ],
)
def test_each_credential_shape_is_removed_and_the_rest_kept(text: str, shown: str) -> None:
    assert str(UnreachableError(text)) == shown


# --- every output path -------------------------------------------------------------


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_an_expected_error_is_redacted_in_human_and_json_output(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = fresh(24)
    monkeypatch.setenv(variable, secret)
    app = guarded_app(f"registry said: {secret} is not valid", UnreachableError)
    human = CliRunner().invoke(app, ["fail"])
    as_json = CliRunner().invoke(app, ["fail", "--json"])
    assert human.exit_code == as_json.exit_code == 3
    assert human.stderr == "error: registry said: *** is not valid\n"
    assert json.loads(as_json.stdout)["error"] == "registry said: *** is not valid"


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_crash_is_redacted_in_its_message_and_its_log_file(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = fresh(24)
    monkeypatch.setenv(variable, secret)
    monkeypatch.setenv("PATCHKEEPER_LOG_DIR", str(tmp_path))
    app = guarded_app(f"cannot use {secret}", RuntimeError)
    result = CliRunner().invoke(app, ["fail", "--json", "--token", secret])
    assert result.exit_code == 70
    doc = json.loads(result.stdout)
    assert doc["error"].startswith("unexpected RuntimeError: cannot use *** (a bug")
    log_text = Path(doc["log"]).read_text(encoding="utf-8")
    assert "command: patchkeeper fail --json --token ***" in log_text  # the argv line
    assert "RuntimeError: cannot use ***" in log_text  # the traceback
    assert secret not in result.output + log_text


def test_a_registered_secret_is_redacted_in_every_output_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, logged: Callable[[str], str]
) -> None:
    secret = fresh(16, first="d")
    register_secret(secret)
    monkeypatch.setenv("PATCHKEEPER_LOG_DIR", str(tmp_path))
    assert logged(f"auth for bot:{secret} from the Docker config").endswith(
        "auth for bot:*** from the Docker config\n"
    )
    expected = CliRunner().invoke(guarded_app(f"refused {secret}", UpstreamError), ["fail"])
    assert expected.exit_code == 2 and expected.stderr == "error: refused ***\n"
    crash = CliRunner().invoke(guarded_app(f"refused {secret}", ValueError), ["fail", "--json"])
    log_text = Path(json.loads(crash.stdout)["log"]).read_text(encoding="utf-8")
    assert "ValueError: refused ***" in log_text and secret not in log_text + crash.output


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_secret_variable_is_redacted_in_log_records(
    variable: str, monkeypatch: pytest.MonkeyPatch, logged: Callable[[str], str]
) -> None:
    secret = fresh(12)
    monkeypatch.setenv(variable, secret)
    err = logged(f"GET https://api.example.test/user with {secret} -> 200")
    assert err == (
        "patchkeeper: INFO patchkeeper.upstream.github: "
        "GET https://api.example.test/user with *** -> 200\n"
    )
