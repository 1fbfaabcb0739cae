"""`make help` lists every target a person may type (issue 10): a target added without a line in
help fails here."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def test_make_help_lists_every_phony_target() -> None:
    text = MAKEFILE.read_text(encoding="utf-8")
    phony = set(re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE).group(1).split())  # type: ignore[union-attr]
    listed = set(re.findall(r'@echo "make ([a-z-]+)', text))
    listed |= {"venv", "node", "checkov"} if "venv, node, checkov" in text else set()
    assert phony - listed == set()
    assert {"az", "test-unit", "format", "demo", "test", "up", "bench"} <= listed
