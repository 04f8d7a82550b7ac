"""Where the time goes: py-spy on Ray's processes, pyinstrument in this one.

A missed target's row carries the top of a profile taken while the same load ran again:
functions by inclusive share of samples (the stack they head) and by own share (the leaf).
The raw collapsed stacks are kept beside the results (`bench/results/profiles/`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.report import RESULTS

PROFILES = RESULTS / "profiles"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy next to this Python (the venv's), or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    """py-spy recording some processes in the background until `stop()`."""

    def __init__(self, pids: dict[str, int], name: str, duration_s: float) -> None:
        self.name = name
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        tool = py_spy()
        if tool is None:
            return
        PROFILES.mkdir(parents=True, exist_ok=True)
        for label, pid in pids.items():
            out = PROFILES / f"{name}-{label}.txt"
            command = [
                tool,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(duration_s))),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(out),
            ]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.procs[label] = (proc, out)

    def stop(self, top: int = 12) -> list[str]:
        """Wait for the recordings; return the summaries, one block per process."""
        lines: list[str] = []
        for label, (proc, out) in self.procs.items():
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            if not out.exists():
                err = proc.stderr.read().decode() if proc.stderr else ""
                lines.append(f"[{label}] py-spy failed: {err.strip()[-200:]}")
                continue
            lines += [f"[{label}] py-spy, {out.name}", *summarize(out.read_text(), top)]
        return lines


def summarize(collapsed: str, top: int = 12) -> list[str]:
    """Top functions by inclusive and by own share of the samples of collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_label(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not total:
        return ["  (no samples: the process was idle)"]
    lines = [f"  {total} samples; inclusive:"]
    # Frames every sample of a thread passes through: they say nothing about where time goes.
    skip = (
        "<module>",
        "run_forever",
        "_run_once",
        "_run (asyncio/events.py)",
        "Thread._bootstrap",
        "Thread.run",
        "_worker (concurrent",
        "_WorkItem.run",
        "_resume_span",
        "auto_init_wrapper",
        "_run_module_as_main",
        "_run_code",
        "main (bench/__main__.py)",
        "Worker.main_loop",
    )
    shown = 0
    for frame, count in inclusive.most_common():
        if any(s in frame for s in skip) or count == total:
            continue
        lines.append(f"    {100 * count / total:5.1f}%  {frame}")
        shown += 1
        if shown >= top:
            break
    mine = [(f, c) for f, c in inclusive.most_common() if "(tracker/" in f][:top]
    if mine:
        lines.append("  inclusive, the tracker's own code:")
        lines += [f"    {100 * count / total:5.1f}%  {frame}" for frame, count in mine]
    lines.append("  own time:")
    idle = ("Thread.run", "_worker (concurrent", "Worker.main_loop", "Condition.wait")
    busy = [(f, c) for f, c in own.most_common() if not any(i in f for i in idle)]
    for frame, count in busy[: top // 2 + 2]:
        lines.append(f"    {100 * count / total:5.1f}%  {frame}")
    return lines


def _label(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


@contextlib.contextmanager
def in_process(lines: list[str], top_lines: int = 45) -> Iterator[None]:
    """Profile this process with pyinstrument; append the top of its tree to `lines`."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        yield
        return
    profiler = Profiler(interval=0.001, async_mode="enabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        lines += ["[bench process] pyinstrument", *text.splitlines()[:top_lines]]
