from patchkeeper.errors import ConflictError, PatchkeeperError, UnreachableError, redact


def test_credentials_and_tokens_are_redacted() -> None:
    text = (
        "cannot fetch https://x-access-token:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r.git"
    )
    assert redact(text) == "cannot fetch https://***@github.com/o/r.git"
    assert "github_pat_" not in redact("token github_pat_11AAAAAAAAAAAAAAAAAAAAAA_bbbbbbbbbb here")


def test_errors_carry_their_exit_codes_and_never_the_secret() -> None:
    assert ConflictError("x").exit_code == 1
    assert PatchkeeperError("x").exit_code == 2
    err = UnreachableError("https://u:pw@host/repo unreachable")
    assert err.exit_code == 3 and "pw" not in str(err)
