"""The exit-code contract and redaction, through the public error classes."""

import pytest

from patchkeeper.errors import (
    EXIT_BAD_INPUT,
    EXIT_CONFLICT,
    EXIT_UNREACHABLE,
    ConfigError,
    ImageError,
    PatchkeeperError,
    ServerError,
    UnreachableError,
    UnsafeInputError,
    UpstreamError,
    redact,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError, 2),
        (UnsafeInputError, 2),
        (UpstreamError, 2),
        (ImageError, 2),
        (ServerError, 1),
        (UnreachableError, 3),
    ],
)
def test_each_error_class_has_its_documented_exit_code(
    error: type[PatchkeeperError], code: int
) -> None:
    assert error("x").exit_code == code
    assert (EXIT_CONFLICT, EXIT_BAD_INPUT, EXIT_UNREACHABLE) == (1, 2, 3)


def test_the_message_is_kept_word_for_word_when_it_holds_no_secret() -> None:
    message = "recipes/demo.yaml: field 'tags': no (?P<date>) group"
    assert str(ConfigError(message)) == message
    assert ConfigError(message).args == (message,)


def test_a_token_is_replaced_and_the_text_around_it_kept() -> None:
    token = "ghp_" + "a1B2" * 9
    assert redact(f"token {token} rejected") == "token *** rejected"
    assert str(UpstreamError(f"GET /repos: 401 for {token}")) == "GET /repos: 401 for ***"


def test_text_without_credentials_is_unchanged() -> None:
    text = "https://github.com/sgl-project/sglang.git at ghp_short"
    assert redact(text) == text
