"""`--output table|json|tsv`, as az has it: `json` prints the API's own answer (for scripts and jq),
`tsv` the table's cells without a header (for `cut` and shell loops), `table` aligned columns with a
header (for people). Pure: it returns text."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

FORMATS = ("table", "json", "tsv")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(cell(item) for item in value)
    return str(value)


def render(
    data: Any, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str, empty: str = ""
) -> str:
    """`data` is what `json` prints; `rows` (dicts with at least `columns`) what `table` and `tsv` do."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    cells = [
        [cell(row.get(column)).replace("\t", " ").replace("\n", " ") for column in columns] for row in rows
    ]
    if fmt == "tsv":
        return "\n".join("\t".join(line) for line in cells)
    if not cells:
        return empty
    header = [column[:1].upper() + column[1:] for column in columns]  # az-style: Name, ResourceGroup
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=False)]
    lines = [header, ["-" * width for width in widths], *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
