"""The tracker's benchmark harness: `python -m bench` (all scenarios), `--quick`, `--only NAME`.

Each scenario starts what it needs on 127.0.0.1 (its own Ray, Serve, temporary file storage),
measures the tracker beside a baseline taken in the same run (the machines are shared and
noisy, so ratios are what compare across runs), and returns rows for the table. The rows are
printed and written to `bench/results/latest.json`; docs/benchmarks.md explains them.
"""

from __future__ import annotations

from bench.report import Row

__all__ = ["Row"]
