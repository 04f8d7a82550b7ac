"""The docs name tests that exist: a defect listed in docs/reliability.md (or any test a doc
names as `tests/file.py::name`) is guarded by a test the suite runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_test_the_docs_name_is_in_the_suite() -> None:
    named = [
        (doc.name, *match.groups())
        for doc in sorted((ROOT / "docs").glob("*.md"))
        for match in NAMED.finditer(doc.read_text())
    ]
    assert len([n for n in named if n[0] == "reliability.md"]) >= 17
    missing = [
        f"{doc}: {file}::{name}"
        for doc, file, name in named
        if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]
    assert missing == []
