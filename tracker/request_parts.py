"""What the handlers read of a request, and small parts of their answers: the privacy
signals, the page's site, times and user IDs in parameters, the HTTPS question, a download's
name. Plain functions over Starlette's request and headers."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, unquote

from starlette.requests import Request

from tracker import schema
from tracker.errors import InvalidInput
from tracker.middleware import ESCAPED_PATH
from tracker.visits.referrer import same_site


def accepted_body(accepted: int) -> bytes:
    return b'{"success":true,"accepted":%d}' % accepted


def signals_decline(headers: Mapping[str, str]) -> bool:
    """Global Privacy Control or Do Not Track: the request is answered as declined before
    anything else is looked at (docs/privacy.md)."""
    return headers.get("sec-gpc") == "1" or headers.get("dnt") == "1"


def site_host(headers: Mapping[str, str]) -> str | None:
    """The host of the page a tracking request comes from: its `Origin` (a listed site's page),
    else the tracker's own host (`Host`)."""
    origin = headers.get("origin")
    if origin and origin != "null":
        return origin
    return headers.get("host")


def drop_same_site_referrers(movements: list[schema.Movement], site: str | None) -> None:
    """A page view's referrer (a host by now) that is the site itself is not a source."""
    for movement in movements:
        if movement.data.referrer is not None and same_site(movement.data.referrer, site):
            movement.data.referrer = None


def over_https(request: Request) -> bool:
    """Whether the request came over HTTPS, so that the cookies it gets may say `Secure`. Behind
    a load balancer that ends TLS, the server takes the scheme from `X-Forwarded-Proto` when
    the balancer is trusted (`FORWARDED_ALLOW_IPS`, docs/deploy.md)."""
    return request.url.scheme == "https"


def time_param(name: str, value: str) -> int:
    """A query parameter in ms since the epoch: ASCII digits only (`str.isdigit` takes "²" and
    other scripts' digits), no more than a movement's timestamp may be."""
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > len(str(schema.MAX_TIMESTAMP_MS))
        or int(value) > schema.MAX_TIMESTAMP_MS
    ):
        shown = value if len(value) <= 32 else f"{value[:32]}..."
        raise InvalidInput(
            name, f"{shown!r} is not a time in ms since the epoch (0 to {schema.MAX_TIMESTAMP_MS})"
        )
    return int(value)


def path_user_id(request: Request) -> str:
    """The `{user_id}` of a `/api/users/...` path, decoded and checked (a user ID may hold
    `/`, sent as `%2F`: `middleware.escape_user_paths`)."""
    value: str = request.path_params["user_id"]
    if request.scope.get(ESCAPED_PATH):
        try:
            value = unquote(value, errors="strict")
        except UnicodeDecodeError:
            raise InvalidInput("userId", "not UTF-8 text once percent-decoded") from None
    return schema.check_user_id("userId", value)


def attachment(filename: str) -> str:
    """A `Content-Disposition` naming a download `filename`, whatever characters it holds: an
    ASCII stand-in, and the exact name in RFC 6266's `filename*` (header values are Latin-1,
    and a quote or backslash would end the plain one)."""
    plain = "".join(c if (c.isascii() and c.isalnum()) or c in "._-@+" else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"
