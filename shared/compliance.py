"""Compliance findings: what converge saw but must not touch (a foreign rule opening a protected port
to the Internet ahead of our Deny, a full priority band, a foreign rule carrying our name prefix
without our marker, which is never ours and never deleted). Stored per target, replaced on every pass,
served at GET /api/compliance.

Table `findings`: PK sha256(target key), RK sha256(kind|rule|vm|port): one row per live finding;
a pass over a target replaces that target's rows, so a fixed problem disappears on the next pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableClient

from shared.answers import ComplianceFinding
from shared.model import TargetRef
from shared.plan import Finding
from shared.settings import Settings
from shared.storage import table
from shared.table_keys import hashed_key, odata_quote


@dataclass(frozen=True)
class StoredFinding:
    target: str
    kind: str
    rule: str
    vm: str
    port: int
    detail: str
    first_seen: datetime
    last_seen: datetime

    def to_json(self) -> ComplianceFinding:
        kind, _, resource_id = self.target.partition("|")
        return ComplianceFinding(
            kind=self.kind,
            targetKind=kind,
            targetId=resource_id,
            ruleName=self.rule,
            virtualMachineId=self.vm,
            port=self.port,
            detail=self.detail,
            firstSeen=self.first_seen.isoformat(),
            lastSeen=self.last_seen.isoformat(),
        )


def _row(finding: Finding) -> str:
    vm = finding.vm.key if finding.vm is not None else ""
    return hashed_key(f"{finding.kind}|{finding.rule_name}|{vm}|{finding.port}")


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class FindingStore:
    def __init__(self, client: TableClient) -> None:
        self._table = client

    @classmethod
    def from_settings(cls, settings: Settings) -> FindingStore:
        return cls(table("findings", settings))

    def replace(self, target: TargetRef, findings: Iterable[Finding], now: datetime) -> None:
        partition = hashed_key(target.key)
        existing = {
            row["RowKey"]: row
            for row in self._table.query_entities(f"PartitionKey eq {odata_quote(partition)}")
        }
        wanted = {_row(f): f for f in findings}
        for row_key, finding in wanted.items():
            first_seen = existing[row_key]["FirstSeen"] if row_key in existing else now
            self._table.upsert_entity(
                {
                    "PartitionKey": partition,
                    "RowKey": row_key,
                    "Target": target.key,
                    "Kind": finding.kind.value,
                    "Rule": finding.rule_name,
                    "Vm": finding.vm.id if finding.vm is not None else "",
                    "Port": finding.port,
                    "Detail": finding.detail,
                    "FirstSeen": first_seen,
                    "LastSeen": now,
                }
            )
        for row_key in set(existing) - set(wanted):
            self._table.delete_entity(partition, row_key)

    def list(self) -> list[StoredFinding]:
        found = [
            StoredFinding(
                target=str(row["Target"]),
                kind=str(row["Kind"]),
                rule=str(row["Rule"]),
                vm=str(row["Vm"]),
                port=int(row["Port"]),
                detail=str(row["Detail"]),
                first_seen=_utc(row["FirstSeen"]),
                last_seen=_utc(row["LastSeen"]),
            )
            for row in self._table.list_entities()
        ]
        return sorted(found, key=lambda f: (f.target, f.vm, f.port, f.rule))
