"""The `tracker` command: serve, mint identity tokens, export and erase users, show status,
evaluate the predictions."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

from tracker.config import Config
from tracker.errors import ConfigError, TrackerError


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


def _export_parquet(args: argparse.Namespace, config: Config) -> int:
    from tracker.parquet.columns import Window
    from tracker.parquet.destination import open_destination
    from tracker.parquet.job import export_parquet

    window = Window(_instant("--from", args.from_), _instant("--to", args.to))
    open_destination(args.dest, "DEST")  # a destination it cannot write is refused first
    t = _connect(config)
    t.flush()
    exported = export_parquet(config.storage, args.dest, window, progress=sys.stderr.isatty())
    print(json.dumps({"dest": args.dest, **exported.as_dict()}))
    return 0


def _instant(option: str, text: str | None) -> int | None:
    """An ISO 8601 date or time (UTC unless it says otherwise) in ms since the epoch."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{option}={text!r}: expected an ISO 8601 date or time, such as 2026-12-07 or "
            "2026-12-07T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _erase(args: argparse.Namespace, config: Config) -> int:
    import ray

    t = _connect(config)
    print(json.dumps(ray.get(t.user(args.user_id).erase.remote())))
    return 0


def _status(args: argparse.Namespace, config: Config) -> int:
    t = _connect(config)
    print(json.dumps(t.status(), indent=2))
    return 0


def _predictions(args: argparse.Namespace, config: Config) -> int:
    import asyncio

    from tracker.conversions.store import DefinitionStore
    from tracker.predictions.evaluate import ObservationsQuery, evaluate, report_text
    from tracker.storage import open_storage

    t = _connect(config)
    found = asyncio.run(DefinitionStore(open_storage(config.storage)).read())
    goals = {name: goal.match for name, goal in found.goals.items()}
    observations = asyncio.run(t.query(ObservationsQuery(goals)))
    result = evaluate(observations, int(config.session_timeout_s * 1000))
    print(json.dumps(result, indent=2) if args.json else report_text(result))
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
    parquet = sub.add_parser(
        "export-parquet", help="every user's movements and sessions as Parquet, by day"
    )
    parquet.add_argument("dest", help="a local folder, file://path or s3://bucket/prefix")
    parquet.add_argument(
        "--from", dest="from_", metavar="ISO", help="only events received from then on (UTC)"
    )
    parquet.add_argument("--to", metavar="ISO", help="only events received before then (UTC)")
    erase = sub.add_parser("erase", help="erase all of a user's data")
    erase.add_argument("user_id")
    sub.add_parser("status", help="hosts, users in memory and set aside, pending alarms")
    predictions = sub.add_parser("predictions", help="the behaviour predictions' models")
    what = predictions.add_subparsers(dest="action", required=True)
    evaluate = what.add_parser(
        "evaluate", help="time-split evaluation of both models against their baselines"
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    return p


COMMANDS = {
    "serve": _serve,
    "token": _token,
    "write-key": _write_key,
    "export": _export,
    "export-parquet": _export_parquet,
    "erase": _erase,
    "status": _status,
    "predictions": _predictions,
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
