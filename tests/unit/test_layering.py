"""Modules meet through public names: no module of shared/ imports another's private helper (a
leading underscore), so either side can change its internals without breaking the other."""

from __future__ import annotations

import ast
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def private_imports() -> list[str]:
    found = []
    for path in sorted(SHARED.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("shared"):
                found += [
                    f"{path.relative_to(SHARED.parent)}: from {node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports() == []
