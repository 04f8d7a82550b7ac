"""The measured figures in docs/*.md, filled in from the result files in bench/results/.

Every figure the docs quote sits between two markers, and is what the result file gives:

    the tracker takes <!-- bench:http-one-rps -->1,445 req/s<!-- /bench --> of ...

`NAME` is a key of `FIGURES` (one value of one row of a result file, formatted) or of
`TABLES` (a whole table, on lines of its own between the markers). `python -m bench --docs`
rewrites every region; a full run, `--only NAME --update` and the fault tests rewrite them
after writing their result file. tests/test_bench_docs.py fails when a region differs from
what the result files give, so a doc cannot drift from the measurements it quotes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import RESULTS, number, read, table

DOCS = Path(__file__).parent.parent / "docs"

REGION = re.compile(r"<!-- bench:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /bench -->", re.DOTALL)

# A results file's stem, and the field that names its rows.
SOURCES = {"latest": "name", "faults": "scenario", "client": "name"}


class UnknownFigure(KeyError):
    """A region names a figure that neither `FIGURES` nor `TABLES` defines."""


class MissingFigure(LookupError):
    """The result files do not hold a figure a region quotes (its row is gone, or a profile
    does not name the function): the doc's text around it needs a look, not just new digits."""


@dataclass(frozen=True)
class Figure:
    """One value of a result file: `path` (dotted; list items by index) within the row whose
    naming field is `row` (None: the file's own facts), divided by the value at `per` in the
    same row if given, times `scale`, formatted by `fmt`."""

    source: str
    row: str | None
    path: str
    fmt: str
    scale: float = 1.0
    per: str = ""

    def render(self, files: Files) -> str:
        row = files.row(self.source, self.row)
        value = _at(row, self.path)
        if self.scale != 1.0:
            value *= self.scale
        if self.per:
            value /= _at(row, self.per)
        return self.fmt.format(value)


def _at(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for step in path.split("."):
        value = value[int(step)] if isinstance(value, list) else value[step]
    return value


@dataclass(frozen=True)
class Share:
    """A function's inclusive share of one process's samples in a row's profile, as py-spy
    gave it (the first line naming `function` after the `[process]` heading)."""

    source: str
    row: str
    process: str
    function: str

    def render(self, files: Files) -> str:
        lines = files.row(self.source, self.row)["profile"]
        heading = f"[{self.process}]"
        start = next(i for i, line in enumerate(lines) if line.startswith(heading))
        for line in lines[start + 1 :]:
            if line.startswith("["):
                break
            share, _, name = line.strip().partition("  ")
            if name.strip().startswith(self.function + " "):
                return share
        raise KeyError(f"no {self.function} in the {self.process} profile of {self.row!r}")


class Files:
    """The result files of `directory`, read once each."""

    def __init__(self, directory: Path = RESULTS) -> None:
        self.directory = directory
        self._read: dict[str, dict[str, Any]] = {}

    def document(self, source: str) -> dict[str, Any]:
        if source not in self._read:
            self._read[source] = json.loads((self.directory / f"{source}.json").read_text())
        return self._read[source]

    def row(self, source: str, name: str | None) -> dict[str, Any]:
        document = self.document(source)
        if name is None:
            return document
        key = SOURCES[source]
        for row in document["rows"]:
            if row[key] == name:
                found: dict[str, Any] = row
                return found
        raise KeyError(f"{source}.json has no row whose {key} is {name!r}")


def _latest(row: str | None, path: str, fmt: str, scale: float = 1.0, per: str = "") -> Figure:
    return Figure("latest", row, path, fmt, scale, per)


STORAGE_WRITES = "storage: journal writes/s at high load"
STORAGE_BYTES = "storage: bytes written per event, compaction included"
ALARMS = "alarms: fire lag p99, 1,000,000 pending, ingesting"
ALARM_MEMORY = "alarms: memory per pending alarm"
TRACK = "handles: track calls/s"
TRACK_WAITING = "handles: track calls/s beside a no-op that waits for a commit"
TRACK_MANY = "handles: track_many events/s (durable)"
TRACK_MANY_2 = "handles: track_many events/s (durable), 2 hosts"
PASSIVATED = "passivated user's first event, median"
MEMORY = "memory: host bytes per retained movement (1,000,000)"
USERS = "memory: distinct users active, sharded (one machine)"
PER_USER_MEMORY = "per-user placement: memory per actor (USS)"
PER_USER_START = "per-user placement: start time per actor (first event)"
PER_USER_USERS = "per-user placement: users per node (memory / USS per actor)"
HTTP_ONE = "http: one event per request, durable"
HTTP_P99 = "http: p99 latency at half of peak"
HTTP_BATCHES = "http: batches of 50 events, durable"
SEGMENT_BATCHES = "segment: batch ingest, 50 messages per request, durable"
HTTP_CPU_ONE = "http: CPU per request, one event (replica and host)"
HTTP_CPU_BATCH = "http: CPU per request, 50 events (replica and host)"
LOADGEN = "load generator: asyncio client on hello-world"
WS_EVENTS = "websocket: one event per message, durable"
WS_P99 = "websocket: p99 latency at half of peak"
WS_CPU = "websocket: CPU per event (replica and host)"
SCALING = "scaling: {} host(s), {} replica(s)"
PARQUET = "parquet: export of every history, events/s"
CLIENT_SIZE = "client: {}, gzipped"
CLIENT_FILES = {
    "default": "default script",
    "hover": "hover file",
    "websocket": "websocket file",
    "experiments": "experiments file",
}
CLIENT_DEFAULT = CLIENT_SIZE.format(CLIENT_FILES["default"])
CLIENT_SCRIPT = "client: page scripting time with tracker.js"
CLIENT_LONG = "client: long tasks of tracker.js (over 50 ms)"
FUNNEL = "conversions: 4-step funnel, tracker (2 hosts) vs DuckDB over Parquet"
RETENTION = "conversions: weekly retention, tracker (2 hosts) vs DuckDB over Parquet"
DERIVE = "analytics: derivations per session"
DERIVE_NEW = "analytics: derivations per session, a user agent not seen before"
INDEX_COST = "analytics: query index per event"
INDEX_BYTES = "analytics: query index memory per event"
INDEX_BATCHES = "analytics: batch throughput with the query index"
NEXT_TOP1 = "predictions: next page top-1 accuracy"
NEXT_TOP3 = "predictions: next page top-3 accuracy"
AUC = "predictions: propensity AUC"
BRIER = "predictions: propensity Brier score"
PREDICTING_INGEST = "predictions: batch ingest with the online next-page update"

FIGURES: dict[str, Figure | Share] = {
    # bench/results/latest.json: the machine
    "machine-memory": _latest(None, "machine.memory_gib", "{} GiB"),
    "run-minutes": _latest(None, "duration_s", "{:.0f} minutes", 1 / 60),
    # storage
    "storage-events-per-s": _latest(STORAGE_WRITES, "baseline_value", "{:,.0f}"),
    "storage-journal-writes-per-s": _latest(STORAGE_WRITES, "value", "{:,.0f}"),
    "storage-low-events-per-s": _latest(STORAGE_WRITES, "details.levels.0.events_per_s", "{:,.0f}"),
    "storage-low-commits-per-s": _latest(
        STORAGE_WRITES, "details.levels.0.commits_per_s", "{:,.0f}"
    ),
    "storage-bytes-per-event": _latest(STORAGE_BYTES, "value", "{:,.0f} B"),
    "storage-baseline-bytes": _latest(STORAGE_BYTES, "baseline_value", "{:,.0f} B"),
    "storage-ratio": _latest(STORAGE_BYTES, "ratio", "{:.2f}x"),
    **{
        f"storage-{kind}-bytes-per-event": _latest(
            STORAGE_BYTES,
            f"details.written_bytes_by_kind.{kind}",
            "{:,.0f} B",
            per="details.events",
        )
        for kind in ("journal", "chunk", "snapshot")
    },
    # predictions
    "predictions-users": _latest(NEXT_TOP1, "details.users", "{:,}"),
    "predictions-transitions": _latest(NEXT_TOP1, "details.transitions_tested", "{:,}"),
    "predictions-top1": _latest(NEXT_TOP1, "value", "{:.1%}"),
    "predictions-top1-baseline": _latest(NEXT_TOP1, "baseline_value", "{:.1%}"),
    "predictions-top3": _latest(NEXT_TOP3, "value", "{:.1%}"),
    "predictions-top3-baseline": _latest(NEXT_TOP3, "baseline_value", "{:.1%}"),
    "predictions-sessions": _latest(AUC, "details.sessions_tested", "{:,}"),
    "predictions-auc": _latest(AUC, "value", "{:.3f}"),
    "predictions-brier": _latest(BRIER, "value", "{:.4f}"),
    "predictions-brier-baseline": _latest(BRIER, "baseline_value", "{:.4f}"),
    "predictions-evaluate-s": _latest(NEXT_TOP1, "details.evaluate_s", "{:.1f} s"),
    "predictions-ingest-ratio": _latest(PREDICTING_INGEST, "ratio", "{:.3f}"),
    "predictions-ingest": _latest(PREDICTING_INGEST, "value", "{:,.0f} events/s"),
    "predictions-ingest-baseline": _latest(PREDICTING_INGEST, "baseline_value", "{:,.0f} events/s"),
    # alarms
    "alarms-p99": _latest(ALARMS, "value", "{:,.0f} ms"),
    "alarms-idle-p99": _latest(ALARMS, "baseline_value", "{:,.0f} ms"),
    "alarms-bytes": _latest(ALARM_MEMORY, "value", "{:,.0f} B"),
    # analytics
    "derive-session-us": _latest(DERIVE, "value", "{:,.0f} µs"),
    "derive-validation-us": _latest(DERIVE, "baseline_value", "{:,.1f} µs"),
    "derive-new-agent-ms": _latest(DERIVE_NEW, "value", "{:,.1f} ms", 1 / 1000),
    "index-event-us": _latest(INDEX_COST, "value", "{:,.1f} µs"),
    "index-host-event-us": _latest(INDEX_COST, "baseline_value", "{:,.0f} µs"),
    "index-event-bytes": _latest(INDEX_BYTES, "value", "{:,.0f} B"),
    "index-batches-ratio": _latest(INDEX_BATCHES, "ratio", "{:.2f}x"),
    "index-batches-events-per-s": _latest(INDEX_BATCHES, "value", "{:,.0f}"),
    "index-batches-baseline": _latest(INDEX_BATCHES, "baseline_value", "{:,.0f}"),
    # handles
    "track-ratio": _latest(TRACK, "ratio", "{:.2f}x"),
    "track-calls-per-s": _latest(TRACK, "value", "{:,.0f}"),
    "track-noop-calls-per-s": _latest(TRACK, "baseline_value", "{:,.0f}"),
    "track-host-cpu": _latest(TRACK, "details.cpu_ms_per_call.track.actor-0", "{:.2f} ms"),
    "track-noop-cpu": _latest(TRACK, "details.cpu_ms_per_call.noop.actor-0", "{:.2f} ms"),
    "track-waiting-ratio": _latest(TRACK_WAITING, "ratio", "{:.2f}x"),
    "track-many-events-per-s": _latest(TRACK_MANY, "value", "{:,.0f}"),
    "track-many-ratio": _latest(TRACK_MANY, "ratio", "{:.2f}x"),
    # the Parquet export
    "parquet-events": _latest(PARQUET, "details.events", "{:,}"),
    "parquet-events-per-s": _latest(PARQUET, "value", "{:,.0f}"),
    "parquet-duckdb-events-per-s": _latest(PARQUET, "baseline_value", "{:,.0f}"),
    "parquet-ratio": _latest(PARQUET, "ratio", "{:.3g}x"),
    "track-many-noop-events-per-s": _latest(TRACK_MANY, "baseline_value", "{:,.0f}"),
    "track-many-host-cpu": _latest(TRACK_MANY, "details.cpu_ms_per_call.many.actor-0", "{:.1f} ms"),
    "track-many-driver-cpu": _latest(
        TRACK_MANY, "details.cpu_ms_per_call.many.driver", "{:.1f} ms"
    ),
    "track-many-noop-host-cpu": _latest(
        TRACK_MANY, "details.cpu_ms_per_call.noop_many.actor-0", "{:.1f} ms"
    ),
    "track-many-noop-driver-cpu": _latest(
        TRACK_MANY, "details.cpu_ms_per_call.noop_many.driver", "{:.1f} ms"
    ),
    "track-many-analytics-share": Share("latest", TRACK_MANY, "host-0", "SiteStats.observe_stored"),
    "track-many-2-events-per-s": _latest(TRACK_MANY_2, "value", "{:,.0f}"),
    "track-many-2-ratio": _latest(TRACK_MANY_2, "ratio", "{:.2f}x"),
    # passivation
    "passivated-ms": _latest(PASSIVATED, "value", "{:.1f} ms"),
    "passivated-active-ms": _latest(PASSIVATED, "baseline_value", "{:.1f} ms"),
    # memory
    "memory-bytes-per-movement": _latest(MEMORY, "value", "{:,.0f} B"),
    "memory-stored-movement-bytes": _latest(MEMORY, "details.stored_movement_bytes", "{} B"),
    "users-active": _latest(USERS, "value", "{:,.0f}"),
    "users-rss-per-user": _latest(USERS, "details.rss_bytes_per_user", "{:.1f} KB", 1e-3),
    "users-rss": _latest(USERS, "details.rss_delta_mb", "{:.1f} GB", 1e-3),
    # conversions
    "conversions-visitors": _latest(FUNNEL, "details.visitors", "{:,}"),
    "conversions-events": _latest(FUNNEL, "details.events", "{:,}"),
    "conversions-funnel": _latest(FUNNEL, "value", "{:.2f} s"),
    "conversions-funnel-duckdb": _latest(FUNNEL, "baseline_value", "{:.2f} s"),
    "conversions-funnel-ratio": _latest(FUNNEL, "ratio", "{:.2f}x"),
    "conversions-retention": _latest(RETENTION, "value", "{:.2f} s"),
    "conversions-retention-duckdb": _latest(RETENTION, "baseline_value", "{:.2f} s"),
    "conversions-retention-ratio": _latest(RETENTION, "ratio", "{:.2f}x"),
    # per-user placement
    "per-user-uss": _latest(PER_USER_MEMORY, "value", "{:.0f} MB"),
    "per-user-empty-uss": _latest(PER_USER_MEMORY, "baseline_value", "{:.0f} MB"),
    "per-user-start": _latest(PER_USER_START, "value", "{:.2f} s"),
    "per-user-empty-start": _latest(PER_USER_START, "baseline_value", "{:.2f} s"),
    "per-user-users": _latest(PER_USER_USERS, "value", "{:,.0f}"),
    "per-user-node-memory": _latest(PER_USER_USERS, "details.node_memory_gib", "{} GiB"),
    # realtime
    "ws-events": _latest(WS_EVENTS, "value", "{:,.0f} events/s"),
    "ws-http-events": _latest(WS_EVENTS, "baseline_value", "{:,.0f} events/s"),
    "ws-ratio": _latest(WS_EVENTS, "ratio", "{:.2f}x"),
    "ws-p99": _latest(WS_P99, "value", "{:.1f} ms"),
    "ws-http-p99": _latest(WS_P99, "baseline_value", "{:.1f} ms"),
    "ws-p99-rate": _latest(WS_P99, "details.http.rps", "{:,.0f} events/s"),
    "ws-cpu": _latest(WS_CPU, "value", "{:.2f} ms"),
    "ws-http-cpu": _latest(WS_CPU, "baseline_value", "{:.2f} ms"),
    # http
    "http-one-rps": _latest(HTTP_ONE, "value", "{:,.0f} req/s"),
    "http-one-hello-rps": _latest(HTTP_ONE, "baseline_value", "{:,.0f} req/s"),
    "http-one-ratio": _latest(HTTP_ONE, "ratio", "{:.2f}x"),
    "http-p99": _latest(HTTP_P99, "value", "{:.1f} ms"),
    "http-p99-rps": _latest(HTTP_P99, "details.tracker.rps", "{:,.0f} req/s"),
    "http-p50": _latest(HTTP_P99, "details.tracker.p50_ms", "{:.1f} ms"),
    "http-p99-hello": _latest(HTTP_P99, "baseline_value", "{:.1f} ms"),
    "http-p99-slow": _latest(HTTP_P99, "details.tracker.tail.requests_over_25_ms", "{:,}"),
    "http-p99-requests": _latest(HTTP_P99, "details.tracker.requests", "{:,}"),
    "http-p99-slow-windows": _latest(
        HTTP_P99, "details.tracker.tail.windows_of_100_ms_with_them", "{}"
    ),
    "http-batches-events-per-s": _latest(HTTP_BATCHES, "value", "{:,.0f} events/s"),
    "segment-batch-events-per-s": _latest(SEGMENT_BATCHES, "value", "{:,.0f} events/s"),
    "segment-batch-baseline": _latest(SEGMENT_BATCHES, "baseline_value", "{:,.0f} events/s"),
    "segment-batch-ratio": _latest(SEGMENT_BATCHES, "ratio", "{:.2f}x"),
    "http-batches-hello": _latest(HTTP_BATCHES, "baseline_value", "{:,.0f} events/s"),
    "http-batches-ratio": _latest(HTTP_BATCHES, "ratio", "{:.2f}x"),
    "http-cpu-one-replica": _latest(HTTP_CPU_ONE, "details.tracker.replica", "{:.2f} ms"),
    "http-cpu-one-host": _latest(HTTP_CPU_ONE, "details.tracker.host-0", "{:.2f} ms"),
    "http-cpu-batch-replica": _latest(HTTP_CPU_BATCH, "details.tracker.replica", "{:.2f} ms"),
    "http-cpu-batch-host": _latest(HTTP_CPU_BATCH, "details.tracker.host-0", "{:.2f} ms"),
    "http-cpu-batch-hello": _latest(HTTP_CPU_BATCH, "baseline_value", "{:.2f} ms"),
    "http-batches-analytics-share": Share(
        "latest", HTTP_BATCHES, "host-0", "SiteStats.observe_stored"
    ),
    "http-batches-decode-share": Share("latest", HTTP_BATCHES, "host-0", "entries_from_obj"),
    "loadgen-wrk-rps": _latest(LOADGEN, "baseline_value", "{:,.0f} req/s"),
    "loadgen-asyncio-rps": _latest(LOADGEN, "value", "{:,.0f} req/s"),
    # scaling
    "scaling-1-1": _latest(SCALING.format(1, 1), "value", "{:,.0f} req/s"),
    "scaling-2-1": _latest(SCALING.format(2, 1), "ratio", "{:.2f}x"),
    "scaling-4-1": _latest(SCALING.format(4, 1), "ratio", "{:.2f}x"),
    "scaling-2-2": _latest(SCALING.format(2, 2), "ratio", "{:.2f}x"),
    "scaling-4-4": _latest(SCALING.format(4, 4), "ratio", "{:.2f}x"),
    # tracker.js in the browser: bench/results/client.json (`python -m bench --only client`)
    **{
        f"client-{kind}-gzip": Figure("client", CLIENT_SIZE.format(label), "value", "{:,.0f} B")
        for kind, label in CLIENT_FILES.items()
    },
    "client-default-bytes": Figure("client", CLIENT_DEFAULT, "details.bytes", "{:,} B"),
    "client-default-brotli": Figure("client", CLIENT_DEFAULT, "details.brotli", "{:,} B"),
    "client-default-target": Figure("client", CLIENT_DEFAULT, "details.target", "{:,.0f} B"),
    "client-default-budget": Figure("client", CLIENT_DEFAULT, "details.budget", "{:,.0f} B"),
    "client-hover-target": Figure(
        "client", CLIENT_SIZE.format("hover file"), "details.target", "{:,.0f} B"
    ),
    "client-script-ms": Figure("client", CLIENT_SCRIPT, "value", "{:.1f} ms"),
    "client-script-without-ms": Figure("client", CLIENT_SCRIPT, "baseline_value", "{:.1f} ms"),
    "client-script-ratio": Figure("client", CLIENT_SCRIPT, "ratio", "{:.2f}x"),
    "client-visits": Figure("client", CLIENT_SCRIPT, "details.visits", "{}"),
    "client-events-per-visit": Figure(
        "client", CLIENT_SCRIPT, "details.events_sent_per_visit", "{:.0f}"
    ),
    "client-long-tasks": Figure("client", CLIENT_LONG, "value", "{:.0f}"),
    "client-load": Figure("client", None, "machine.load_average.0", "{:.0f}"),
}


def _latest_table(files: Files) -> str:
    rows, _ = read(files.directory / "latest.json")
    return table(rows)


def _latest_runs(files: Files) -> str:
    """When the rows were measured: the full run, and the scenarios run again since."""
    facts = files.document("latest")

    def load(machine: dict[str, Any]) -> str:
        return "/".join(f"{x:g}" for x in machine["load_average"])

    lines = [
        f"- {facts['mode']} run started {facts['started']}, {facts['duration_s']:g} s, "
        f"load generator {facts['load_generator']}, load average {load(facts['machine'])} "
        "(1, 5 and 15 minutes, at its end)"
    ]
    lines += [
        f"- {', '.join(rerun['scenarios'])} run again at {rerun['started']}, "
        f"load average {load(rerun['machine'])}"
        for rerun in facts.get("reruns", [])
    ]
    return "\n".join(lines)


def _latest_machine(files: Files) -> str:
    machine = files.document("latest")["machine"]
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| CPU | {machine['cpus']} x {machine['model']} (as `/proc/cpuinfo` names it) |",
            f"| memory | {machine['memory_gib']} GiB |",
            f"| software | Python {machine['python']}, Linux {machine['kernel']} |",
        ]
    )


def _targets(met: bool) -> Callable[[Files], str]:
    """The rows whose target was met (or missed), one line each."""

    def render(files: Files) -> str:
        rows, _ = read(files.directory / "latest.json")
        return "\n".join(
            f"- {row.name}: {number(row.value)} {row.unit} (target {row.target})"
            for row in rows
            if row.met is met
        )

    return render


FAULT_COLUMNS = ["sent", "acknowledged", "found", "lost", "refused", "recover_s"]


def fault_table(rows: list[dict[str, Any]]) -> str:
    """The fault scenarios' figures as a Markdown table, a row per scenario."""
    lines = [
        "| scenario | sent | acknowledged | found | lost | refused, retried | recover s | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        recover = "-" if row["recover_s"] is None else f"{row['recover_s']:.2f}"
        cells = [row["scenario"], *(str(row[c]) for c in FAULT_COLUMNS[:-1]), recover]
        lines.append("| " + " | ".join([*cells, row["note"]]) + " |")
    return "\n".join(lines)


def _faults_table(files: Files) -> str:
    return fault_table(files.document("faults")["rows"])


def _faults_runs(files: Files) -> str:
    """When and on what each fault row was measured."""
    lines = []
    for row in files.document("faults")["rows"]:
        machine = row["run"]["machine"]
        load = "/".join(f"{x:g}" for x in machine["load_average"])
        lines.append(
            f"- {row['scenario']}: {row['run']['at']}, {machine['cpus']} CPUs, load average {load}"
        )
    return "\n".join(lines)


TABLES: dict[str, Callable[[Files], str]] = {
    "latest-table": _latest_table,
    "latest-runs": _latest_runs,
    "latest-machine": _latest_machine,
    "targets-met": _targets(True),
    "targets-missed": _targets(False),
    "faults-table": _faults_table,
    "faults-runs": _faults_runs,
}


def render(name: str, files: Files) -> str:
    """What the region `name` holds: a figure inline, a table on lines of its own."""
    if name not in FIGURES and name not in TABLES:
        raise UnknownFigure(f"no figure or table named {name!r} (bench/docs.py)")
    try:
        if name in FIGURES:
            return FIGURES[name].render(files)
        return "\n" + TABLES[name](files) + "\n"
    except (LookupError, StopIteration, TypeError) as exc:
        raise MissingFigure(f"{name}: the result files do not give it ({exc!r})") from exc


def _fill(text: str, files: Files, missing: list[str]) -> str:
    """`text` with every region's body replaced by what the result files give; a region they
    do not give keeps its body and is added to `missing`."""

    def body(match: re.Match[str]) -> str:
        try:
            return f"<!-- bench:{match['name']} -->{render(match['name'], files)}<!-- /bench -->"
        except MissingFigure as exc:
            missing.append(str(exc))
            return match[0]

    return REGION.sub(body, text)


def stale(docs: Path = DOCS, results: Path = RESULTS) -> dict[str, list[str]]:
    """The regions, by doc, whose text differs from what the result files give (or that
    quote a figure they do not give)."""
    files = Files(results)
    found: dict[str, list[str]] = {}
    for doc in sorted(docs.glob("*.md")):
        for match in REGION.finditer(doc.read_text()):
            try:
                current = match["body"] == render(match["name"], files)
            except MissingFigure:
                current = False
            if not current:
                found.setdefault(doc.name, []).append(match["name"])
    return found


def refresh(docs: Path = DOCS, results: Path = RESULTS) -> list[Path]:
    """Rewrite every region of `docs` from the result files; return the docs that changed.
    Raises `MissingFigure`, naming each, when some regions quote what the files do not give
    (after rewriting all the others)."""
    files = Files(results)
    changed = []
    missing: list[str] = []
    for doc in sorted(docs.glob("*.md")):
        text = doc.read_text()
        found: list[str] = []
        new = _fill(text, files, found)
        missing += [f"{doc.name}: {line}" for line in found]
        if new != text:
            doc.write_text(new)
            changed.append(doc)
    if missing:
        raise MissingFigure("\n".join(missing))
    return changed
