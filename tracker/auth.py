"""Who is asking: anonymous visitors, signed user IDs, and the admin.

A visitor who never logged in is known only by a random UUID the browser made
(`crypto.randomUUID()`); anyone may write to such an ID. Any other user ID must come with a
token the site's backend minted with the shared `TRACKER_SECRET`, so that one visitor cannot
write into a known user's history. The admin presents `TRACKER_ADMIN_TOKEN`.

For the embedded single-machine setup both values may be left unset: they are generated once
and kept beside the data (`<data dir>/.secrets/`), so every process on the machine agrees.
Neither value is ever logged or put in an error message.

`Access` decides, for the HTTP routes, who a request shows it is: from its headers, cookies
and client address, never from anything else of HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

from tracker.config import Config
from tracker.errors import ConfigError, Unauthorized
from tracker.ratelimit import RateLimiter
from tracker.storage import fsync_dir, local_path, make_folders

log = logging.getLogger(__name__)

TOKEN_VERSION = "v1"
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.I)
# 32 bytes of HMAC-SHA256 are 43 base64url characters without padding.
_TOKEN = re.compile(re.escape(TOKEN_VERSION) + r"\.(0|[1-9][0-9]{0,15})\.([A-Za-z0-9_-]{43})")
_MAX_TOKEN_CHARS = 128
# Config field -> environment variable, for the secrets `ensure_secrets` may generate.
_SECRET_KEYS = {"admin_token": "TRACKER_ADMIN_TOKEN", "secret": "TRACKER_SECRET"}


def is_anonymous(user_id: str) -> bool:
    """True iff `user_id` is a random (version 4) UUID in canonical dashed form."""
    return _UUID4.fullmatch(user_id) is not None


def mint_token(
    secret: str, user_id: str, ttl_s: float = 86400, *, now_s: float | None = None
) -> str:
    """Sign `user_id` for `ttl_s` seconds; the site's backend calls this after its own login.

    Format, so that backends in other languages can mint it::

        v1.<expiry>.<signature>
        expiry    = unix time in whole seconds (decimal, no sign, no leading zeros)
        signature = base64url, without "=" padding, of
                    HMAC-SHA256(key = UTF-8 secret, message = UTF-8 "v1\\n<user_id>\\n<expiry>")

    The token is valid while the current unix time is below `expiry`.
    """
    now = time.time() if now_s is None else now_s
    expiry = int(now + ttl_s)
    if expiry < 0:
        raise ValueError(f"ttl_s={ttl_s!r}: expiry would be before 1970")
    return f"{TOKEN_VERSION}.{expiry}.{_sign(secret, user_id, str(expiry))}"


def verify_token(
    secret: str, user_id: str, token: str, *, now_s: float | None = None, kind: str = "user token"
) -> int:
    """Accept a token minted for exactly this user and not yet expired, and return its expiry
    (unix seconds); raise `Unauthorized` (whose message calls the token `kind`)."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise Unauthorized(f"malformed {kind}: too long")
    match = _TOKEN.fullmatch(token)
    if match is None:
        version = token.split(".", 1)[0]
        if token.count(".") == 2 and version != TOKEN_VERSION:
            raise Unauthorized(f"unsupported {kind} version {version[:8]!r}")
        raise Unauthorized(f"malformed {kind}: expected {TOKEN_VERSION}.<expiry>.<signature>")
    expiry, signature = match.groups()
    # Compare the encoded text, not decoded bytes: base64 has several spellings of one value.
    expected = _sign(secret, user_id, expiry)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise Unauthorized(f"bad {kind} signature for user {user_id!r}")
    now = time.time() if now_s is None else now_s
    if now >= int(expiry):
        raise Unauthorized(f"{kind} expired at {expiry}")
    return int(expiry)


def _sign(secret: str, user_id: str, expiry: str) -> str:
    if not secret:
        # An empty HMAC key makes every token forgeable.
        raise ConfigError("TRACKER_SECRET is empty")
    message = f"{TOKEN_VERSION}\n{user_id}\n{expiry}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_admin(expected: str, presented: str | None) -> None:
    """Accept the admin token in constant time; raise `Unauthorized` otherwise."""
    if not expected:
        raise Unauthorized("admin access is not configured")
    if not presented:
        raise Unauthorized("missing admin token")
    # Bytes, because compare_digest refuses non-ASCII str (headers may carry any byte).
    if not hmac.compare_digest(expected.encode(), presented.encode()):
        raise Unauthorized("wrong admin token")


# How long a dashboard sign-in lasts (the admin cookie's lifetime, in the browser and here).
ADMIN_SESSION_S = 12 * 3600
# The subject of an admin session's token: not a user ID (a tab is not printable, and user IDs
# are printable text), so that no user's identity token is one, whatever the keys.
_ADMIN_SESSION = "admin\tsession"


def admin_session(admin_token: str, *, now_s: float | None = None) -> str:
    """The admin cookie's value: a token (`mint_token`'s format) signed with the admin token,
    not the admin token itself, so a copied cookie opens the admin routes until it expires
    only (or until the admin token changes), and never reveals the token."""
    return mint_token(admin_token, _ADMIN_SESSION, ADMIN_SESSION_S, now_s=now_s)


def check_admin_session(
    admin_token: str, presented: str | None, *, now_s: float | None = None
) -> int:
    """Accept an unexpired `admin_session` value and return when it expires (unix seconds);
    raise `Unauthorized` otherwise."""
    if not admin_token:
        raise Unauthorized("admin access is not configured")
    if not presented:
        raise Unauthorized("missing admin token")
    return verify_token(admin_token, _ADMIN_SESSION, presented, now_s=now_s, kind="admin session")


def check_write_key(write_keys: tuple[str, ...], authorization_header: str | None) -> None:
    """Accept HTTP Basic credentials whose user name is one of `write_keys` (Segment's SDKs
    send the write key so, with an empty password); raise `Unauthorized` otherwise. Every key
    is compared, in constant time."""
    if not write_keys:
        raise Unauthorized("server-side tracking is not configured (TRACKER_WRITE_KEYS)")
    scheme, _, encoded = (authorization_header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise Unauthorized("missing write key: send it as the HTTP Basic user name")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise Unauthorized("malformed HTTP Basic credentials") from None
    presented = decoded.partition(":")[0].encode()
    found = False
    for key in write_keys:
        found |= hmac.compare_digest(key.encode(), presented)
    if not found:
        raise Unauthorized("wrong write key")


def new_write_key() -> str:
    """A new write key: 32 random URL-safe characters."""
    return secrets.token_urlsafe(24)


def bearer(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None if there is none."""
    if authorization_header is None:
        return None
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


ADMIN_COOKIE = "tracker_admin"
VISITOR_COOKIE = "tracker_visitor"
# The visitor cookie's lifetime: it is all an anonymous visitor has to read their sessions with.
VISITOR_COOKIE_S = 365 * 24 * 3600


class Access:
    """Who may call the routes: anonymous visitors, identified users (their token), the owner
    of a user's sessions (their visitor cookie or token) and the admin (token or login cookie).

    Failed admin authentications are counted per client address (`admin_failures`), so that
    guessing the admin token is as slow as TRACKER_ADMIN_FAILURES_PER_MIN makes it. `clock`
    (unix seconds) dates the admin's login sessions."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.admin_token: str = config.admin_token or ""
        self.secret: str = config.secret or ""
        self.clock = clock
        per_min = config.admin_failures_per_min
        self.admin_failures = RateLimiter(per_min / 60, burst=max(per_min, 1.0))

    def authorize_user(self, headers: Mapping[str, str], user_id: str) -> None:
        """Anonymous visitors are random UUIDs; any other user ID needs its identity token."""
        if is_anonymous(user_id):
            return
        token = bearer(headers.get("authorization"))
        if token is None:
            raise Unauthorized(f"user {user_id!r} is not anonymous: an identity token is required")
        verify_token(self.secret, user_id, token)

    def require_admin(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], client: str
    ) -> int | None:
        """Accept the admin's token (a bearer) or login cookie, or raise `Unauthorized`; return
        when the cookie's session expires (unix seconds), None for the token, which does not."""
        presented = bearer(headers.get("authorization"))
        if presented is None:
            cookie = cookies.get(ADMIN_COOKIE)
            return check_admin_session(self.admin_token, cookie, now_s=self.clock())
        self.check_admin_token(client, presented)
        return None

    def check_admin_token(self, client: str, presented: str | None) -> None:
        """Accept the admin token; a wrong one is charged to the client's address
        (TRACKER_ADMIN_FAILURES_PER_MIN). An address out of failures is refused before its
        token is compared, so that guesses past the limit learn nothing."""
        self.admin_failures.check_left(client)
        try:
            check_admin(self.admin_token, presented)
        except Unauthorized:
            self.admin_failures.check(client)
            raise

    def admin_cookie(self) -> str:
        """The value of a new admin login cookie."""
        return admin_session(self.admin_token, now_s=self.clock())

    def may_read(
        self, headers: Mapping[str, str], cookies: Mapping[str, str], client: str, user_id: str
    ) -> bool:
        """Whether the request shows that it may read `user_id`'s sessions: by that anonymous
        visitor's cookie, an identity token for the user, or as the admin (cookie or token).
        A bearer that is neither is a 401, and counts as a failed admin authentication."""
        if self.has_visitor_cookie(cookies, user_id):
            return True
        presented = bearer(headers.get("authorization"))
        if presented is None:
            try:
                self.require_admin(headers, cookies, client)
            except Unauthorized:
                return False
            return True
        try:
            verify_token(self.secret, user_id, presented)
        except Unauthorized as refused:
            try:
                self.check_admin_token(client, presented)
            except Unauthorized:
                raise refused from None
        return True

    def visitor_proof(self, user_id: str) -> str:
        mac = hmac.new(self.secret.encode(), f"visitor\n{user_id}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def visitor_cookie(self, user_id: str) -> str:
        """The value of the visitor cookie that proves the visitor owns `user_id`."""
        return f"{user_id}.{self.visitor_proof(user_id)}"

    def has_visitor_cookie(self, cookies: Mapping[str, str], user_id: str) -> bool:
        """Whether the request carries the visitor cookie of `user_id`, an anonymous visitor.
        Any other user reads with their token, whatever cookie comes along: one set before
        cookies were kept to anonymous visitors would outlive the token by up to a year."""
        if not is_anonymous(user_id):
            return False
        cookie = cookies.get(VISITOR_COOKIE, "")
        owner, _, proof = cookie.rpartition(".")
        # Bytes, because compare_digest refuses non-ASCII str (a cookie may carry any byte).
        expected = self.visitor_proof(user_id).encode()
        return owner == user_id and hmac.compare_digest(proof.encode(), expected)


def ensure_secrets(config: Config) -> Config:
    """Fill an unset admin token and secret from `<data dir>/.secrets/`, generating them once.

    Only local `file://` storage may do this: with shared storage the processes may be on
    different machines, which must be given the same values (`TRACKER_ADMIN_TOKEN`,
    `TRACKER_SECRET`) explicitly.
    """
    missing = {name: key for name, key in _SECRET_KEYS.items() if not getattr(config, name)}
    if not missing:
        return config
    root = local_path(config.storage)
    if root is None:
        scheme = urlparse(config.storage).scheme
        raise ConfigError(
            f"{' and '.join(missing.values())} must be set when TRACKER_STORAGE is not a local "
            f"file:// URL (it is {scheme}://...)"
        )
    directory = root / ".secrets"
    try:
        # Each folder made is synced into its parent: a secret synced into a folder whose
        # own entry was not could be lost in a machine crash, and a new one generated after.
        make_folders(str(directory))
        if directory.stat().st_mode & 0o777 != 0o700:
            os.chmod(directory, 0o700)
        values = {name: _load_or_create(directory / name) for name in missing}
    except OSError as exc:
        raise ConfigError(f"cannot keep secrets in {directory}: {exc.strerror or exc}") from exc
    return config.replace(**values)


def _load_or_create(path: Path) -> str:
    """Read `path`, or publish a new random value there; concurrent callers all read the winner.

    The value is written and fsynced under a private temporary name, then hard-linked to `path`:
    a link never replaces an existing file, so the first process wins and the file is never seen
    half-written.
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, secrets.token_urlsafe(32).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            log.info("generated %s in %s", path.name, path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ConfigError(f"{path} is empty; delete it to have a new value generated")
    return value
