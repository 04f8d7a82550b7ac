"""Rows of the results table, the machine they were measured on, and how they are written."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass
class Row:
    """One figure beside its in-run baseline.

    `ratio` is value / baseline_value. `met` is None for figures without a target (context).
    `details` holds the numbers a reader needs to check the figure; `profile` the top of the
    profile taken when the target was missed.
    """

    name: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    met: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 4)
        return data


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    return {
        "cpus": os.cpu_count(),
        "model": model,
        "memory_gib": round(total_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    """A Markdown table: readable in a terminal, and pasted as is into docs/benchmarks.md."""
    header = ["scenario", "value", "unit", "baseline", "baseline value", "ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        met = {True: "yes", False: "**NO**", None: "-"}[row.met]
        ratio = "-" if row.ratio is None else f"{number(row.ratio)}x"
        cells = [
            row.name,
            number(row.value),
            row.unit,
            row.baseline or "-",
            number(row.baseline_value),
            ratio,
            row.target or "-",
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def read(path: Path) -> tuple[list[Row], dict[str, Any]]:
    """The rows and the run's facts from a results file."""
    document = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(Row)}
    rows = [Row(**{k: v for k, v in r.items() if k in names}) for r in document.pop("rows")]
    return rows, document


def write(
    rows: list[Row], meta: dict[str, Any], directory: Path = RESULTS, stem: str = "latest"
) -> Path:
    """Write `<stem>.json` and a timestamped copy; return the latter's path."""
    directory.mkdir(parents=True, exist_ok=True)
    document = {**meta, "rows": [row.to_json() for row in rows]}
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    copy = directory / f"{stem}-{stamp}.json"
    copy.write_text(text)
    (directory / f"{stem}.json").write_text(text)
    return copy


def merge(stem: str, key: str, row: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Put `row` into `<stem>.json` in place of the row whose `key` field is the same (at the
    end when there is none), keeping the other rows and the file's own facts: a scenario run by
    itself updates its row alone."""
    path = directory / f"{stem}.json"
    document: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"rows": []}
    rows = document["rows"]
    at = next((i for i, old in enumerate(rows) if old[key] == row[key]), len(rows))
    rows[at : at + 1] = [row]
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
