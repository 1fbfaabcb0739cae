"""Table storage keys from values that may contain characters keys forbid (`/ \\ # ?`, controls).

Resource ids are full of `/`: their key is the sha256 hex of the id folded as ARM compares ids
(`shared.model.arm_key`: `lower()` would make `rg\u212a` and `rgk` one key), and every entity keeps
the id itself as a property, so a key never has to be decoded.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from shared.model import arm_key

# Upper bound of a RowKey prefix range: `|` (0x7C) is followed by `}` (0x7D).
PREFIX_END = "}"


def hashed_key(value: str) -> str:
    return hashlib.sha256(arm_key(value.strip()).encode()).hexdigest()


def time_key(moment: datetime) -> str:
    """A RowKey fragment that sorts as time does (UTC, microseconds, fixed width)."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def inverted_time_key(moment: datetime) -> str:
    """Sorts newest first: Table storage returns a partition in RowKey order."""
    micros = int(moment.astimezone(UTC).timestamp() * 1_000_000)
    return f"{(10**17 - micros):017d}"


def odata_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
