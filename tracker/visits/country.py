"""The country of a client address, by an offline lookup (iptocc). The address is read here
and forgotten: only the two-letter code is kept (not even a cache holds addresses)."""

from __future__ import annotations

import iptocc


def country_of(address: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of an IPv4 or IPv6 address; None for what is not an
    address, a private, loopback or reserved one (none is in the table), or one not in it."""
    if not address:
        return None
    try:
        code = iptocc.country_code(address)
    except ValueError:
        return None
    return code.upper() if isinstance(code, str) and len(code) == 2 else None
