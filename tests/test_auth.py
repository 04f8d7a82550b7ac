from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
import stat
import threading
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as ProcessBarrier
from pathlib import Path

import pytest
from conftest import record_folder_syncs
from hypothesis import given
from hypothesis import strategies as st

from tracker.auth import (
    ADMIN_SESSION_S,
    admin_session,
    bearer,
    check_admin,
    check_admin_session,
    ensure_secrets,
    is_anonymous,
    mint_token,
    verify_token,
)
from tracker.config import Config
from tracker.errors import ConfigError, Unauthorized
from tracker.storage import local_path

SECRET = "s3cr3t-for-tests"
NOW = 1_700_000_000.0


# --- anonymous IDs ---------------------------------------------------------------------------


def test_random_uuids_are_anonymous_in_either_case() -> None:
    for _ in range(100):
        value = str(uuid.uuid4())
        assert is_anonymous(value)
        assert is_anonymous(value.upper())


@pytest.mark.parametrize(
    "user_id",
    [
        str(uuid.uuid1()),
        str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")),
        "6f1c2a3b-4d5e-4f60-7a8b-9c0d1e2f3a4b",  # variant nibble 7 is not RFC 4122
        "6f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4g",  # not hex
        "6f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4b0",  # too long
        "6f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4",  # too short
        "6f1c2a3b4d5e4f608a8b9c0d1e2f3a4b",  # no dashes
        "{6f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4b}",
        "6f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4b\n",
        "../6f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4b",
        "6f1c2a3b-4d5e-4f60-8a8b-9c0d/e2f3a4b",
        "6f1c2a3b-4d5e-4f60-8a8b-9c0d\\e2f3a4b",
        "\u0666f1c2a3b-4d5e-4f60-8a8b-9c0d1e2f3a4b",  # an Arabic-Indic digit
        "alice@example.com",
        "",
    ],
)
def test_anything_but_a_random_uuid_is_not_anonymous(user_id: str) -> None:
    assert not is_anonymous(user_id)


# --- user tokens -----------------------------------------------------------------------------


def test_a_minted_token_verifies_for_its_user_until_it_expires() -> None:
    token = mint_token(SECRET, "alice", ttl_s=60, now_s=NOW)
    verify_token(SECRET, "alice", token, now_s=NOW)
    verify_token(SECRET, "alice", token, now_s=NOW + 59)
    with pytest.raises(Unauthorized, match="expired"):
        verify_token(SECRET, "alice", token, now_s=NOW + 60)


def test_a_token_has_the_documented_format() -> None:
    token = mint_token(SECRET, "alice", ttl_s=60, now_s=NOW)
    expiry = int(NOW) + 60
    digest = hmac.new(SECRET.encode(), f"v1\nalice\n{expiry}".encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert token == f"v1.{expiry}.{signature}"


def test_a_token_of_another_user_is_refused() -> None:
    token = mint_token(SECRET, "alice", now_s=NOW)
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(SECRET, "bob", token, now_s=NOW)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    forged = mint_token("not-the-secret", "alice", now_s=NOW)
    with pytest.raises(Unauthorized, match="signature") as caught:
        verify_token(SECRET, "alice", forged, now_s=NOW)
    assert SECRET not in str(caught.value)
    real = mint_token(SECRET, "alice", now_s=NOW).rsplit(".", 1)[1]
    assert real not in str(caught.value)


def test_a_token_with_a_pushed_back_expiry_is_refused() -> None:
    _, expiry, signature = mint_token(SECRET, "alice", ttl_s=60, now_s=NOW).split(".")
    tampered = f"v1.{int(expiry) + 86400}.{signature}"
    with pytest.raises(Unauthorized, match="signature"):
        verify_token(SECRET, "alice", tampered, now_s=NOW + 120)


def test_a_token_of_another_version_is_refused() -> None:
    token = mint_token(SECRET, "alice", now_s=NOW)
    with pytest.raises(Unauthorized, match="version"):
        verify_token(SECRET, "alice", "v2" + token[2:], now_s=NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1..",
        "v1.123",
        "v1.abc.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.-5.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.0123.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.123.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "v1.123.AAAA",
        "v1.123.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.extra",
        "v1.\uff11\uff12\uff13.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # fullwidth digits
        "x" * 10_000,
    ],
)
def test_a_malformed_token_is_refused(token: str) -> None:
    with pytest.raises(Unauthorized, match="malformed"):
        verify_token(SECRET, "alice", token, now_s=NOW)


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TRACKER_SECRET"):
        mint_token("", "alice", now_s=NOW)


TOKEN_CHARS = st.sampled_from("v1.0123456789ABCDEFabcdef-_=xyz") | st.characters()


@given(user_id=st.text(min_size=1, max_size=128), secret=st.text(min_size=1), data=st.data())
def test_any_minted_token_verifies_and_any_changed_character_breaks_it(
    user_id: str, secret: str, data: st.DataObject
) -> None:
    token = mint_token(secret, user_id, ttl_s=3600, now_s=NOW)
    verify_token(secret, user_id, token, now_s=NOW)
    index = data.draw(st.integers(0, len(token) - 1), label="index")
    char = data.draw(TOKEN_CHARS.filter(lambda c: c != token[index]), label="char")
    changed = token[:index] + char + token[index + 1 :]
    with pytest.raises(Unauthorized):
        verify_token(secret, user_id, changed, now_s=NOW)


# --- admin -----------------------------------------------------------------------------------


def test_the_admin_token_is_accepted_and_anything_else_refused() -> None:
    check_admin("admin-token", "admin-token")
    for presented in [None, "", "admin-tokeN", "admin-token ", "ädmin-token"]:
        with pytest.raises(Unauthorized):
            check_admin("admin-token", presented)


def test_no_admin_token_configured_admits_nobody() -> None:
    with pytest.raises(Unauthorized, match="not configured"):
        check_admin("", "")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", None),
        ("Bearer a b", None),
        ("abc", None),
    ],
)
def test_bearer_takes_the_token_of_a_bearer_header_only(
    header: str | None, token: str | None
) -> None:
    assert bearer(header) == token


# --- generated secrets -----------------------------------------------------------------------


def test_local_path_maps_file_urls_and_nothing_else() -> None:
    assert local_path("file://./data") == Path("data")
    assert local_path("file:///srv/tracker/data") == Path("/srv/tracker/data")
    assert local_path("s3://bucket/prefix") is None
    assert local_path("memory://") is None


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_generated_once_with_private_modes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = ensure_secrets(Config(storage="file://./data"))
    assert first.admin_token and first.secret
    assert first.admin_token != first.secret
    directory = tmp_path / "data" / ".secrets"
    assert _mode(directory) == 0o700
    assert _mode(directory / "admin_token") == 0o600
    assert _mode(directory / "secret") == 0o600
    assert (directory / "secret").read_text() == first.secret
    assert sorted(p.name for p in directory.iterdir()) == ["admin_token", "secret"]
    again = ensure_secrets(Config(storage=f"file://{tmp_path}/data"))
    assert (again.admin_token, again.secret) == (first.admin_token, first.secret)


def test_the_secrets_folder_and_the_data_folder_made_for_it_are_synced_into_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret synced into a folder is durable only once the folder's entry is too: after a
    machine crash a lost secret would be generated anew, and every token signed with it
    refused."""
    synced = record_folder_syncs(monkeypatch, tmp_path)
    ensure_secrets(Config(storage=f"file://{tmp_path}/data"))
    assert synced == [".", "data"]  # the folders holding the new "data" and ".secrets"


def test_given_secrets_are_kept_and_only_missing_ones_generated(tmp_path: Path) -> None:
    given_both = Config(storage=f"file://{tmp_path}", admin_token="a", secret="s")
    assert ensure_secrets(given_both) is given_both
    assert not (tmp_path / ".secrets").exists()
    filled = ensure_secrets(Config(storage=f"file://{tmp_path}", admin_token="a"))
    assert filled.admin_token == "a"
    assert filled.secret
    assert sorted(p.name for p in (tmp_path / ".secrets").iterdir()) == ["secret"]


def test_concurrent_threads_agree_on_the_generated_secrets(tmp_path: Path) -> None:
    config = Config(storage=f"file://{tmp_path}/data")
    start = threading.Barrier(8)
    results: list[tuple[str | None, str | None]] = []

    def run() -> None:
        start.wait(timeout=10)
        filled = ensure_secrets(config)
        results.append((filled.admin_token, filled.secret))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 8
    assert len(set(results)) == 1


def _secrets_in_child(
    storage: str, start: ProcessBarrier, out: Queue[tuple[str | None, str | None]]
) -> None:
    start.wait(timeout=30)
    filled = ensure_secrets(Config(storage=storage))
    out.put((filled.admin_token, filled.secret))


def test_concurrent_processes_agree_on_the_generated_secrets(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    out = context.Queue()
    storage = f"file://{tmp_path}/data"
    children = [
        context.Process(target=_secrets_in_child, args=(storage, start, out)) for _ in range(2)
    ]
    for child in children:
        child.start()
    results = [out.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    assert results[0] == results[1]
    assert results[0] == (
        (tmp_path / "data/.secrets/admin_token").read_text(),
        (tmp_path / "data/.secrets/secret").read_text(),
    )


def test_an_empty_secret_file_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / ".secrets").mkdir(mode=0o700)
    (tmp_path / ".secrets" / "secret").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        ensure_secrets(Config(storage=f"file://{tmp_path}", admin_token="a"))


def test_shared_storage_without_secrets_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TRACKER_ADMIN_TOKEN and TRACKER_SECRET"):
        ensure_secrets(Config(storage="s3://bucket/prefix"))
    with pytest.raises(ConfigError, match="TRACKER_SECRET") as caught:
        ensure_secrets(Config(storage="s3://bucket/prefix", admin_token="a"))
    assert "TRACKER_ADMIN_TOKEN" not in str(caught.value)
    given_both = Config(storage="s3://bucket/prefix", admin_token="a", secret="s")
    assert ensure_secrets(given_both) is given_both


def test_an_admin_session_opens_until_it_expires_and_never_holds_the_token() -> None:
    admin = "admin-token-0123456789abcdef0123"
    cookie = admin_session(admin, now_s=1_000)
    assert admin not in cookie
    check_admin_session(admin, cookie, now_s=1_000)
    check_admin_session(admin, cookie, now_s=999 + ADMIN_SESSION_S)
    with pytest.raises(Unauthorized, match="admin session expired"):
        check_admin_session(admin, cookie, now_s=1_000 + ADMIN_SESSION_S)
    with pytest.raises(Unauthorized):  # the admin token changed: every session ends
        check_admin_session("another-admin-token-0123456789ab", cookie, now_s=1_000)
    version, expiry, mac = cookie.split(".")
    forged = [
        f"{version}.{int(expiry) + 3600}.{mac}",
        admin,
        "",
        "x.y",
        f"{version}.{expiry}.",
        f"{version}.١٢.{mac}",
        mint_token(admin, "alice", ADMIN_SESSION_S, now_s=1_000),  # a user's token: not one
    ]
    for value in forged:
        with pytest.raises(Unauthorized):
            check_admin_session(admin, value, now_s=1_000)
