"""The `tracker` command: serve, mint identity tokens, export and erase users, show status."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from tracker.config import Config
from tracker.errors import TrackerError


def _connect(config: Config) -> Any:
    """Join the running Ray cluster: a second cluster on the same storage would fence the first.

    The running actors keep their settings: these commands only read and erase."""
    from tracker.api import Tracker
    from tracker.cluster import init_ray

    init_ray(config.namespace, "command", log_to_driver=False)
    return Tracker(config, reconfigure=False)


def _serve(args: argparse.Namespace, config: Config) -> int:
    from tracker import server

    server.run(config)
    return 0


def _token(args: argparse.Namespace, config: Config) -> int:
    from tracker import auth

    config = auth.ensure_secrets(config)
    assert config.secret is not None
    print(auth.mint_token(config.secret, args.user_id, args.ttl_s))
    return 0


def _write_key(args: argparse.Namespace, config: Config) -> int:
    from tracker import auth

    print(auth.new_write_key())
    return 0


def _export(args: argparse.Namespace, config: Config) -> int:
    import msgspec
    import ray
    from tqdm import tqdm

    t = _connect(config)
    lines = ray.get(t.user(args.user_id).export.remote())
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
        for line in tqdm(lines, desc=f"export {args.user_id}", unit="rec", disable=not args.output):
            out.write(msgspec.json.encode(line) + b"\n")
    return 0


def _erase(args: argparse.Namespace, config: Config) -> int:
    import ray

    t = _connect(config)
    print(json.dumps(ray.get(t.user(args.user_id).erase.remote())))
    return 0


def _status(args: argparse.Namespace, config: Config) -> int:
    t = _connect(config)
    print(json.dumps(t.status(), indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracker", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the demo site, tracker and dashboard (Ray Serve)")
    token = sub.add_parser("token", help="mint an identity token for a logged-in user")
    token.add_argument("user_id")
    token.add_argument("--ttl-s", type=float, default=86400.0, help="validity in seconds")
    sub.add_parser(
        "write-key",
        help="make a write key for server-side sources (add it to TRACKER_WRITE_KEYS)",
    )
    export = sub.add_parser("export", help="all of a user's data as NDJSON")
    export.add_argument("user_id")
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    erase = sub.add_parser("erase", help="erase all of a user's data")
    erase.add_argument("user_id")
    sub.add_parser("status", help="hosts, users in memory and set aside, pending alarms")
    return p


COMMANDS = {
    "serve": _serve,
    "token": _token,
    "write-key": _write_key,
    "export": _export,
    "erase": _erase,
    "status": _status,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = Config.from_env()
        return COMMANDS[args.command](args, config)
    except TrackerError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
