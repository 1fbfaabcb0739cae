"""`make help` lists every target a person may type (issue 10): a target added without a line in
help fails here."""

from __future__ import annotations

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def test_make_help_lists_every_phony_target() -> None:
    text = MAKEFILE.read_text(encoding="utf-8")
    phony_line = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert phony_line is not None
    help_lines = [line for line in text.splitlines() if line.startswith('\t@echo "make ')]
    listed = {name for line in help_lines for name in re.findall(r"make ([a-z-]+)", line)}
    assert set(phony_line.group(1).split()) - listed == set()
    assert {"az", "test-unit", "format", "demo", "test", "up", "bench", "help"} <= listed
