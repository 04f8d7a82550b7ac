"""`python -m bench [--quick] [--only NAME ...]`: run the scenarios, print the table, write JSON.

A full run writes `bench/results/latest.json` (the file the docs quote) and refills the docs'
figures from it (`bench.docs`); `--quick` writes `quick.json` and `--only` writes
`<name>.json`, so a smoke run never replaces the figures of the last full one. Each also
leaves a timestamped copy (not committed). `--docs` only refills the docs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import docs, loadgen
from bench.cluster import shared_ray
from bench.report import RESULTS, Row, machine, read, table, write

# name -> module with `run(quick) -> list[Row]`, in the order a full run takes them: the ones
# without Ray first, the HTTP ones (the longest to set up) last.
SCENARIOS = {
    "client": "bench.client",
    "storage": "bench.storage",
    "analytics": "bench.analytics",
    "alarms": "bench.alarms",
    "predictions": "bench.predictions",
    "handles": "bench.handles",
    "passivation": "bench.passivation",
    "memory": "bench.memory",
    "conversions": "bench.conversions",
    "per_user": "bench.per_user",
    "parquet": "bench.parquet",
    "http": "bench.http",
    "realtime": "bench.realtime",
    "segment": "bench.segment",
    "scaling": "bench.scaling",
}


# With --quick these share one Ray (each still has its own namespace and storage); the HTTP
# ones always start their own, since Serve's settings are fixed when it starts.
SHARED_RAY = {"handles", "passivation", "memory", "conversions", "per_user", "parquet"}


def _scenario(name: str) -> Callable[[bool], list[Row]]:
    module = importlib.import_module(SCENARIOS[name])
    run: Callable[[bool], list[Row]] = module.run
    return run


def _merged(
    rows: list[Row], meta: dict[str, Any], names: list[str]
) -> tuple[list[Row], dict[str, Any]]:
    """The last full run's rows with those of `names` replaced by `rows`, in scenario order."""
    old_rows, old_meta = read(RESULTS / "latest.json")
    kept = [r for r in old_rows if r.details.get("scenario") not in names]
    merged = sorted(kept + rows, key=lambda r: list(SCENARIOS).index(r.details["scenario"]))
    seconds = {**old_meta.get("scenario_seconds", {}), **meta["scenario_seconds"]}
    reruns = [
        *old_meta.get("reruns", []),
        {"scenarios": names, "started": meta["started"], "machine": meta["machine"]},
    ]
    return merged, {**old_meta, "scenario_seconds": seconds, "reruns": reruns}


def _refresh_docs() -> int:
    """Refill the docs' figures; 1 when some quote what the result files no longer give."""
    try:
        changed = docs.refresh()
    except docs.MissingFigure as exc:
        print(f"these figures are not in the result files; edit the docs around them:\n{exc}")
        return 1
    print("\n".join(f"rewritten: {doc}" for doc in changed) or "the docs are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (about 2 minutes)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), metavar="NAME")
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --only: replace those scenarios' rows in latest.json (a rerun when the "
        "machine is quieter); each row keeps the time its scenario ran",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="refill the figures in docs/*.md from the result files and exit",
    )
    parser.add_argument(
        "--table",
        nargs="?",
        const=str(RESULTS / "latest.json"),
        metavar="FILE",
        help="print the table of a results file (default: the latest full run) and exit",
    )
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    if args.docs:
        return _refresh_docs()
    if args.table:
        shown, facts = read(Path(args.table))
        print(f"{table(shown)}\n\nmachine: {facts['machine']}")
        print(f"{facts['mode']} run, started {facts['started']}, took {facts['duration_s']} s")
        return 0
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    names = args.only or list(SCENARIOS)
    if {"http", "scaling"} & set(names) and not loadgen.have_wrk():
        print(
            "note: wrk is not installed (`make loadgen` installs it): the closed-loop HTTP "
            "runs use the slower asyncio client, and their figures are not comparable",
            file=sys.stderr,
            flush=True,
        )
    started = time.time()
    rows: list[Row] = []
    timings: dict[str, float] = {}
    shared = contextlib.ExitStack()
    sharing = False
    for name in names:
        if args.quick and name in SHARED_RAY and not sharing:
            shared.enter_context(shared_ray())
            sharing = True
        elif name not in SHARED_RAY and sharing:
            shared.close()
            sharing = False
        print(f"== {name}", flush=True)
        began = time.monotonic()
        try:
            found = _scenario(name)(args.quick)
        except Exception as exc:
            traceback.print_exc()
            found = [Row(name=f"{name}: failed", value=0, unit="", met=False)]
            found[0].details = {"error": f"{type(exc).__name__}: {exc}"}
        timings[name] = round(time.monotonic() - began, 1)
        for row in found:
            row.details.setdefault("scenario", name)
            row.details.setdefault("ran_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        rows += found
        print(table(found), flush=True)
    shared.close()
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "mode": "quick" if args.quick else "full",
        "scenarios": names,
        "scenario_seconds": timings,
        "machine": machine(),
        "load_generator": "wrk" if loadgen.have_wrk() else "asyncio",
    }
    stem = "quick" if args.quick else "latest"
    if args.only and args.update and not args.quick:
        rows, meta = _merged(rows, meta, names)
    elif args.only:
        stem = "-".join(args.only) + ("-quick" if args.quick else "")
    copy = write(rows, meta, RESULTS, stem)
    print(f"\n{table(rows)}\n\nmachine: {meta['machine']}\nwritten: {RESULTS / (stem + '.json')}")
    print(f"(and {copy.name}); took {meta['duration_s']} s")
    docs_refilled = stem != "latest" or _refresh_docs() == 0
    return 0 if docs_refilled and all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
