import json
import logging

import pytest
import typer
from typer.testing import CliRunner

from patchkeeper.boundary import GuardedGroup
from patchkeeper.errors import (
    PatchkeeperError,
    ServerError,
    UnreachableError,
    redact,
    register_secret,
)
from patchkeeper.ui import configure_logging


def test_credentials_and_tokens_are_redacted() -> None:
    text = (
        "cannot fetch https://x-access-token:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r.git"
    )
    assert redact(text) == "cannot fetch https://***@github.com/o/r.git"
    assert "github_pat_" not in redact("token github_pat_11AAAAAAAAAAAAAAAAAAAAAA_bbbbbbbbbb here")


def test_errors_carry_their_exit_codes_and_never_the_secret() -> None:
    assert ServerError("x").exit_code == 1
    assert PatchkeeperError("x").exit_code == 2
    err = UnreachableError("https://u:pw@host/repo unreachable")
    assert err.exit_code == 3 and "pw" not in str(err)


# --- redaction: every GitHub token family, every way a secret reaches output ----------


BODY = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # 36 characters, as GitHub issues them


@pytest.mark.parametrize("prefix", ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"])
def test_every_github_token_prefix_is_redacted(prefix: str) -> None:
    token = prefix + BODY
    assert redact(f"bad credentials: {token}.") == "bad credentials: ***."


def test_fine_grained_tokens_are_redacted() -> None:
    token = "github_pat_11ABCDEFG0" + "x" * 20 + "_" + "Y" * 59
    assert redact(f"token={token}") == "token=***"


def test_a_token_in_a_query_string_is_redacted() -> None:
    url = "https://git.example.com/o/r.git?private_token=s3cr3tvalue&ref=main"
    assert redact(f"cannot fetch {url}") == (
        "cannot fetch https://git.example.com/o/r.git?private_token=***&ref=main"
    )
    assert redact("GET /x?access_token=abc123#frag") == "GET /x?access_token=***#frag"


def test_a_password_holding_an_unencoded_at_sign_is_removed_whole() -> None:
    text = "fetch http://bot:p@ss@w0rd@git.example.com/o/r.git failed"
    assert redact(text) == "fetch http://***@git.example.com/o/r.git failed"


def test_a_40_hex_token_echoed_by_an_api_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    hex_token = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("GITHUB_TOKEN", hex_token)
    echoed = f'403 {{"message": "token {hex_token} lacks scope", "documentation_url": "x"}}'
    assert hex_token not in redact(echoed)
    monkeypatch.delenv("GITHUB_TOKEN")
    assert redact(f"Authorization: token {hex_token}") == "Authorization: token ***"
    # a commit id of the same shape, without that context, is kept
    assert redact(f"commit {hex_token}") == f"commit {hex_token}"


def test_registered_secrets_are_redacted_wherever_they_turn_up() -> None:
    register_secret("hunter2-from-docker-config")
    assert redact("login hunter2-from-docker-config refused") == "login *** refused"


def test_log_records_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(1)
    logging.getLogger("patchkeeper.image.registry").info(
        "GET https://u:%s@host/v2/ -> 401", "ghp_" + BODY
    )
    err = capsys.readouterr().err
    assert "patchkeeper: INFO patchkeeper.image.registry: GET https://***@host/v2/" in err
    assert BODY not in err
    configure_logging(0)


def test_error_output_human_and_json_is_redacted() -> None:
    app = typer.Typer(cls=GuardedGroup)

    @app.command()
    def fail(as_json: bool = typer.Option(False, "--json")) -> int:
        raise RuntimeError(f"unreachable https://x:{BODY}@h/ ?token={BODY}")

    @app.command()
    def other() -> None:  # two commands: a group, as the real CLI is
        """Unused."""

    human = CliRunner().invoke(app, ["fail"])
    as_json = CliRunner().invoke(app, ["fail", "--json"])
    assert human.exit_code == as_json.exit_code == 70
    assert BODY not in human.output and BODY not in as_json.output
    assert "https://***@h/" in json.loads(as_json.stdout)["error"]


def test_an_error_quoting_a_server_prints_its_control_characters_as_text() -> None:
    app = typer.Typer(cls=GuardedGroup)

    @app.command()
    def fail() -> int:
        raise ServerError("smoke failed: messages_basic: HTTP 500: \x1b]0;owned\x07\x1b[2J")

    @app.command()
    def other() -> None:  # two commands: a group, as the real CLI is
        """Unused."""

    done = CliRunner().invoke(app, ["fail"])
    assert done.exit_code == 1
    assert (
        done.stderr == "error: smoke failed: messages_basic: HTTP 500: \\x1b]0;owned\\x07\\x1b[2J\n"
    )
