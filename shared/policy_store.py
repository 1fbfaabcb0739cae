"""JIT policies on Table storage, in Defender's JSON.

Table `policies`: PK subscription id, RK `rg|location|name`, both folded as ARM compares names
(`arm_key`: a look-alike resource group such as `rg\u212a` is not `rgk`). Get is a point
read, list by subscription one partition, list by resource group a RowKey prefix range, by location a
filter within those; the queue finds a VM's policy among its resource group's policies.

Names are checked before they become keys, so keys never hold a character Table storage forbids.
The body is the canonical Defender body (shared.defender), kept as JSON split into 30K-character
properties; the request history is not stored here but read from the grant store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.defender import parse_policy_body
from shared.model import DomainError, JitPolicy, PolicyRef, VmRef, arm_key, same_arm_name
from shared.settings import Settings
from shared.storage import table
from shared.table_keys import PREFIX_END, odata_quote

_CHUNK = 30000
_MAX_CHUNKS = 30
_SUBSCRIPTION = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z")
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{1,90}$")
_LOCATION = re.compile(r"^[A-Za-z0-9]{1,64}$")
_NAME = re.compile(r"^[A-Za-z0-9][-\w.]{0,259}$")


def check_subscription(value: str) -> str:
    if not _SUBSCRIPTION.match(value):
        raise DomainError(
            "subscriptionId", f"{value!r} is not a subscription id", code="InvalidSubscriptionId"
        )
    return value


def check_resource_group(value: str) -> str:
    if not _RESOURCE_GROUP.match(value) or value.endswith("."):
        raise DomainError(
            "resourceGroupName", f"{value!r} is not a valid resource group name", code="InvalidResourceGroup"
        )
    return value


def check_location(value: str) -> str:
    if not _LOCATION.match(value):
        raise DomainError("ascLocation", f"{value!r} is not an Azure region name such as 'westeurope'")
    return value


def policy_ref(subscription_id: str, resource_group: str, location: str, name: str) -> PolicyRef:
    """A policy reference from route values, each checked (raises DomainError naming it)."""
    if not _NAME.match(name):
        raise DomainError(
            "jitNetworkAccessPolicyName",
            f"{name!r} is not a valid policy name (letters, digits, '.', '-', '_')",
            code="InvalidResourceName",
        )
    return PolicyRef(
        check_subscription(subscription_id),
        check_resource_group(resource_group),
        check_location(location),
        name,
    )


@dataclass(frozen=True)
class StoredPolicy:
    ref: PolicyRef
    body: dict[str, Any]  # canonical Defender body: {"kind", "virtualMachines"}
    policy: JitPolicy
    updated_at: datetime


def _row_key(ref: PolicyRef) -> str:
    return arm_key(f"{ref.resource_group}|{ref.location}|{ref.name}")


class TablePolicyStore:
    def __init__(self, settings: Settings) -> None:
        self._table = table("policies", settings)
        # Parsed policies by (PartitionKey, RowKey), with the ETag they were parsed from: enforcement
        # lists every policy once per target, and parsing dominates that; an ETag match cannot be stale.
        self._parsed: dict[tuple[str, str], tuple[str, StoredPolicy]] = {}

    def put(self, ref: PolicyRef, body: dict[str, Any], now: datetime | None = None) -> bool:
        """Store `body` (already validated, canonical) under `ref`; True if it was created."""
        text = json.dumps(body, separators=(",", ":"))
        chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        if len(chunks) > _MAX_CHUNKS:
            raise DomainError("properties.virtualMachines", "the policy is too large to store")
        created = self._get_entity(ref) is None
        entity: dict[str, Any] = {
            "PartitionKey": arm_key(ref.subscription_id),
            "RowKey": _row_key(ref),
            "Subscription": ref.subscription_id,
            "ResourceGroup": ref.resource_group,
            "Location": ref.location,
            "Name": ref.name,
            "UpdatedAt": now or datetime.now(UTC),
            "Chunks": len(chunks),
        }
        entity.update({f"Body{index}": chunk for index, chunk in enumerate(chunks)})
        self._table.upsert_entity(entity)
        return created

    def get(self, ref: PolicyRef) -> StoredPolicy | None:
        entity = self._get_entity(ref)
        return _from_entity(entity) if entity is not None else None

    def delete(self, ref: PolicyRef) -> bool:
        """True if there was a policy to delete."""
        if self._get_entity(ref) is None:
            return False
        self._table.delete_entity(arm_key(ref.subscription_id), _row_key(ref))
        return True

    def list_in(
        self, subscription_id: str, resource_group: str | None = None, location: str | None = None
    ) -> list[StoredPolicy]:
        query = f"PartitionKey eq {odata_quote(arm_key(subscription_id))}"
        if resource_group is not None:
            start = f"{arm_key(resource_group)}|"
            query += (
                f" and RowKey ge {odata_quote(start)} and RowKey lt {odata_quote(start[:-1] + PREFIX_END)}"
            )
        policies = [_from_entity(entity) for entity in self._table.query_entities(query)]
        if location is not None:
            policies = [p for p in policies if same_arm_name(p.ref.location, location)]
        return policies

    def list_all(self) -> list[StoredPolicy]:
        """Every policy in every subscription, for enforcement: policies are few, so one scan. Entities
        unchanged since the last call (same ETag) are not parsed again."""
        parsed: dict[tuple[str, str], tuple[str, StoredPolicy]] = {}
        for entity in self._table.list_entities():
            key = (str(entity["PartitionKey"]), str(entity["RowKey"]))
            etag = str(entity.metadata.get("etag") or "")
            known = self._parsed.get(key)
            if known is not None and etag and known[0] == etag:
                parsed[key] = known
            else:
                parsed[key] = (etag, _from_entity(entity))
        self._parsed = parsed
        return [stored for _, stored in parsed.values()]

    def for_vm(self, vm: VmRef) -> Iterator[StoredPolicy]:
        """Policies that list `vm` (a VM's policy lives in the VM's resource group)."""
        for stored in self.list_in(vm.subscription_id, vm.resource_group):
            if stored.policy.vm_policy(vm) is not None:
                yield stored

    def _get_entity(self, ref: PolicyRef) -> Any:
        try:
            return self._table.get_entity(arm_key(ref.subscription_id), _row_key(ref))
        except ResourceNotFoundError:
            return None


def _from_entity(entity: Any) -> StoredPolicy:
    ref = PolicyRef(entity["Subscription"], entity["ResourceGroup"], entity["Location"], entity["Name"])
    text = "".join(entity[f"Body{index}"] for index in range(int(entity["Chunks"])))
    body = json.loads(text)
    policy, canonical = parse_policy_body({"kind": body.get("kind"), "properties": body}, ref)
    updated = entity["UpdatedAt"]
    return StoredPolicy(
        ref, canonical, policy, updated if isinstance(updated, datetime) else datetime.now(UTC)
    )
