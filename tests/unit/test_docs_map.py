"""The map stays true: every file or folder that docs/architecture.md, docs/adr/ and CONTRIBUTING.md
name exists, and every link between them resolves (a moved module fails here, not in a newcomer's
first hour)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "docs" / "architecture.md",
    ROOT / "CONTRIBUTING.md",
    *sorted((ROOT / "docs" / "adr").glob("*.md")),
]
PATH = re.compile(
    r"(?<![\w./-])((?:shared|devhost|emulator|localrig|tests|infra|docs|bench|demo)/[\w./-]*\w/?)"
)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_map_exists() -> None:
    assert all(doc.is_file() for doc in DOCS)
    assert len(DOCS) >= 9  # architecture, CONTRIBUTING, the ADR index and seven ADRs


def test_every_path_the_docs_name_exists() -> None:
    missing = [
        f"{doc.relative_to(ROOT)}: {name}"
        for doc in DOCS
        for name in PATH.findall(doc.read_text(encoding="utf-8"))
        if not (ROOT / name).exists()
    ]
    assert missing == []


def test_every_relative_link_resolves() -> None:
    broken = [
        f"{doc.relative_to(ROOT)}: {target}"
        for doc in DOCS
        for target in LINK.findall(doc.read_text(encoding="utf-8"))
        if "://" not in target and not (doc.parent / target).exists()
    ]
    assert broken == []
