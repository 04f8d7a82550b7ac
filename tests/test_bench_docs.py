"""The docs quote the measurements: every marked figure is what bench/results/ gives.

No benchmark runs here: the regions of docs/*.md are compared with the committed result files
(`bench.docs`), and the pieces that write those files are checked on copies.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from bench import docs
from bench.events import Movements, stored_request_size
from bench.report import RESULTS, merge
from tracker.schema import movement_from_obj
from tracker.user_tracker import UserTracker

USER = "0b7c1f1e-1111-4111-8111-111111111111"


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    """The docs and the result files, copied where a test may change them."""
    shutil.copytree(docs.DOCS, tmp_path / "docs")
    shutil.copytree(RESULTS, tmp_path / "results", ignore=shutil.ignore_patterns("*-*T*.json"))
    return tmp_path / "docs", tmp_path / "results"


def test_every_figure_in_the_docs_is_what_the_result_files_give() -> None:
    assert docs.stale() == {}, "refill them with `python -m bench --docs`"


def test_the_docs_quote_their_tables_and_figures_from_the_result_files() -> None:
    quoted = {
        path.name: {m["name"] for m in docs.REGION.finditer(path.read_text())}
        for path in docs.DOCS.glob("*.md")
    }
    assert {"latest-table", "latest-runs", "latest-machine"} <= quoted["benchmarks.md"]
    assert {"faults-table", "faults-runs"} <= quoted["reliability.md"]
    for name in ("architecture.md", "serving.md", "deploy.md"):
        assert quoted[name], f"{name} quotes no measured figure"
    every = set().union(*quoted.values())
    assert every <= set(docs.FIGURES) | set(docs.TABLES)
    assert set(docs.FIGURES) <= every, "a figure is defined that no doc quotes"


def test_no_figure_is_quoted_inside_a_code_block_where_its_markers_would_show() -> None:
    for path in docs.DOCS.glob("*.md"):
        code_blocks = path.read_text().split("```")[1::2]
        assert not [b for b in code_blocks if docs.REGION.search(b)], path.name


def test_a_figure_that_differs_from_its_result_file_is_found_and_refilled(
    copies: tuple[Path, Path],
) -> None:
    doc_dir, results = copies
    latest = json.loads((results / "latest.json").read_text())
    row = next(r for r in latest["rows"] if r["name"] == docs.HTTP_ONE)
    row["value"] = 4321.0
    (results / "latest.json").write_text(json.dumps(latest))

    stale = docs.stale(doc_dir, results)
    assert "http-one-rps" in stale["benchmarks.md"]
    assert "latest-table" in stale["benchmarks.md"]

    docs.refresh(doc_dir, results)
    assert docs.stale(doc_dir, results) == {}
    text = (doc_dir / "benchmarks.md").read_text()
    assert "<!-- bench:http-one-rps -->4,321 req/s<!-- /bench -->" in text
    assert "| http: one event per request, durable | 4,321 | req/s |" in text


def test_a_region_naming_no_figure_is_refused_by_name(copies: tuple[Path, Path]) -> None:
    doc_dir, results = copies
    (doc_dir / "extra.md").write_text("p99 <!-- bench:http-p999 -->3 ms<!-- /bench -->\n")
    with pytest.raises(docs.UnknownFigure, match="http-p999"):
        docs.stale(doc_dir, results)


def test_a_figure_the_result_files_no_longer_give_is_named_and_the_others_are_refilled(
    copies: tuple[Path, Path],
) -> None:
    doc_dir, results = copies
    quoted = re.search(
        r"<!-- bench:track-many-2-events-per-s -->.*?<!-- /bench -->",
        (doc_dir / "benchmarks.md").read_text(),
    )
    assert quoted is not None
    latest = json.loads((results / "latest.json").read_text())
    latest["rows"] = [r for r in latest["rows"] if r["name"] != docs.TRACK_MANY_2]
    http = next(r for r in latest["rows"] if r["name"] == docs.HTTP_ONE)
    http["value"] = 4321.0
    (results / "latest.json").write_text(json.dumps(latest))

    assert "track-many-2-events-per-s" in docs.stale(doc_dir, results)["benchmarks.md"]
    with pytest.raises(docs.MissingFigure, match=r"benchmarks\.md: track-many-2-events-per-s"):
        docs.refresh(doc_dir, results)
    text = (doc_dir / "benchmarks.md").read_text()
    assert "<!-- bench:http-one-rps -->4,321 req/s<!-- /bench -->" in text
    assert quoted[0] in text


def test_a_fault_scenario_run_alone_replaces_its_own_row_only(copies: tuple[Path, Path]) -> None:
    doc_dir, results = copies
    before = json.loads((results / "faults.json").read_text())
    first, *others = before["rows"]
    rerun = {
        **first,
        "sent": 999,
        "acknowledged": 999,
        "found": 999,
        "run": {"at": "now", "machine": {"cpus": 2, "load_average": [1, 2, 3]}},
    }
    new = {**rerun, "scenario": "a scenario not run before"}

    merge("faults", "scenario", rerun, results)
    merge("faults", "scenario", new, results)

    after = json.loads((results / "faults.json").read_text())
    assert after["rows"] == [rerun, *others, new]
    assert {k: v for k, v in after.items() if k != "rows"} == {
        k: v for k, v in before.items() if k != "rows"
    }
    docs.refresh(doc_dir, results)
    table = (doc_dir / "reliability.md").read_text()
    assert f"| {first['scenario']} | 999 | 999 | 999 |" in table
    assert "| a scenario not run before |" in table


def test_the_storage_baseline_is_the_blob_the_tracker_logs_for_a_request() -> None:
    make = Movements()
    now = time.time_ns() // 1_000_000
    for request in (
        [make.one(USER)],
        make.batch(USER, 20),
        [make.one(USER, "s-a"), make.one(USER, "s-b"), make.one(USER, "s-a")],
    ):
        tracked = UserTracker(USER).track_record([movement_from_obj(m, now) for m in request], now)
        assert tracked.record is not None
        logged = sum(len(blob) for _, blob in tracked.record[3])
        assert stored_request_size(request) == logged
