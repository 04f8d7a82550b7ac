"""The country of a client address, by an offline lookup (iptocc). The address is read here
and forgotten: only the two-letter code is kept."""

from __future__ import annotations

import ipaddress

import iptocc


def country_of(address: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of an IPv4 or IPv6 address; None for an address that is not
    one, private or loopback, or not in the table."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not ip.is_global:
        return None
    code = iptocc.country_code(str(ip))
    return code.upper() if isinstance(code, str) and len(code) == 2 else None
