"""Joining a running Ray cluster, or starting a local Ray, the same way in every entry point.

- `tracker serve` (`make run`) joins a cluster only when told to: an address, or
  `RAY_ADDRESS`. Otherwise it starts a Ray of its own on this machine.
- `tracker.connect()` joins the cluster it is told of, else the one `ray start` recorded on this
  machine if that one still answers, else it starts a local Ray.
- The command line joins the cluster it is told of, the recorded one, or the one Ray running
  on this machine; it starts none (a second Ray over the same storage would fence the first).

A cluster that `ray start` made leaves its address in Ray's temporary folder; when that cluster
died, Ray's own discovery still waits minutes for it before failing. So the recorded address
counts only if something listens at it.

A cluster that `ray start` made uses Ray's token authentication when the machine has a token
(`~/.ray/auth_token`, which any local Ray makes), and Ray sends the token only to a cluster it
found by itself. So before joining an address it was given, this process uses token
authentication whenever it has a token (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
`~/.ray/auth_token`) and `RAY_AUTH_MODE` does not say otherwise; a cluster without
authentication accepts such a process as well.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any, Literal

from tracker.errors import ConfigError

Purpose = Literal["serve", "connect", "command"]

# How long a recorded cluster's address has to accept a connection to count as alive.
PROBE_TIMEOUT_S = 1.0

TOKEN_HELP = (
    "if the cluster uses token authentication (the default of `ray start` on a machine with a "
    "token), give this process the cluster's token, which `ray get-auth-token` prints on its "
    "head node: set RAY_AUTH_TOKEN to it, or RAY_AUTH_TOKEN_PATH to a file holding it, or "
    "put it in ~/.ray/auth_token"
)


def init_ray(
    namespace: str,
    purpose: Purpose,
    address: str | None = None,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> bool:
    """Join a cluster or start a local Ray (see the module docstring); True if started here.

    `options` go to `ray.init`.
    """
    import ray

    target = cluster_address(purpose, address, environ)
    if target is None:
        if purpose == "command":
            raise ConfigError(
                "RAY_ADDRESS is not set and no running Ray cluster was found on this machine; "
                "start the tracker first (`tracker serve`), or set RAY_ADDRESS to its cluster"
            )
        ray.init(address="local", namespace=namespace, **options)
        return True
    _use_token_if_any()
    try:
        ray.init(address=target, namespace=namespace, **options)
    except ConnectionError as exc:
        raise ConfigError(f"RAY_ADDRESS={target!r}: could not join ({exc}); {TOKEN_HELP}") from None
    return False


def cluster_address(
    purpose: Purpose, address: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The address of the cluster to join for `purpose`, or None to start a local Ray."""
    env = os.environ if environ is None else environ
    given = address or env.get("RAY_ADDRESS") or None
    if given is not None and given != "auto":
        return given
    if purpose == "serve" and given is None:
        return None
    recorded = _recorded_address()
    if recorded is not None:
        return recorded
    if purpose == "command" or given == "auto":
        return _running_address()
    return None


def _recorded_address() -> str | None:
    """The address of the last cluster `ray start` made on this machine, if it still answers."""
    from ray._private.utils import read_ray_address

    recorded = read_ray_address()
    if recorded and _answers(recorded):
        return str(recorded)
    return None


def _running_address() -> str | None:
    """The address of the one Ray running on this machine (say, `tracker serve`'s)."""
    from ray._private.services import find_gcs_addresses

    running = sorted(find_gcs_addresses())  # type: ignore[no-untyped-call]
    if len(running) > 1:
        raise ConfigError(
            f"RAY_ADDRESS is not set and several Ray clusters run on this machine "
            f"({', '.join(running)}): set RAY_ADDRESS to the tracker's"
        )
    return running[0] if running else None


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _use_token_if_any() -> None:
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
