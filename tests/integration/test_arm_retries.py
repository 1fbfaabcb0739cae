"""One owner of retries (issue 16 item 4), counted in HTTP attempts at the ARM emulator.

Clients are built by shared/azure_clients.py as the app builds them; faults come from the emulator's
`/_emulator/faults`. A write refused with 429 + Retry-After reaches the caller (converge's loop)
after exactly one attempt; a read is retried by azure-core READ_RETRIES times, honouring Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from azure.core.exceptions import HttpResponseError

from shared.azure_clients import READ_RETRIES, WRITE_RETRIES
from shared.plan import NsgPlan
from shared.targets import RefusalKind, classify
from shared.targets.nsg import NsgTarget

from .conftest import World

NSG = "nsg-web-nic"


def _attempts(world: World, method: str) -> int:
    suffix = f"/networksecuritygroups/{NSG}"
    return len(
        [
            r
            for r in world.emulator.requests()["log"]
            if r["method"] == method and r["path"].lower().endswith(suffix)
        ]
    )


def _adapter(world: World) -> NsgTarget:
    return NsgTarget(world.target("nsg", world.estate.nsg_id(NSG)), world.deps.network)


def _fault(world: World, method: str, count: int | None, retry_after: int = 0) -> None:
    world.emulator.add_fault(
        method=method,
        path=f"(?i)/resourceGroups/{world.estate.resource_group}/.*networkSecurityGroups/{NSG}$",
        status=429,
        code="RetryableErrorDueToAnotherOperation",
        retry_after=retry_after,
        count=count,
    )
    world.emulator.admin_ok("DELETE", "/_emulator/requests")


def test_a_refused_write_reaches_the_caller_after_exactly_one_attempt(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    adapter = _adapter(world)
    snapshot = adapter.read()
    _fault(world, "PUT", None)
    with pytest.raises(HttpResponseError) as refused:
        adapter.write(snapshot, NsgPlan(desired=(), to_remove=(), to_put=(), refused={}, findings=()))
    assert _attempts(world, "PUT") == 1 + WRITE_RETRIES == 1
    refusal = classify(refused.value)
    assert refusal.kind is RefusalKind.BUSY and refusal.status == 429 and refusal.retry_after == 0


def test_a_read_is_retried_by_azure_core_honouring_retry_after(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    adapter = _adapter(world)
    _fault(world, "GET", READ_RETRIES, retry_after=1)  # the last retry gets through
    started = time.monotonic()
    assert any(r.name == "legacy-ssh" for r in adapter.read().rules)
    assert time.monotonic() - started >= READ_RETRIES * 1.0  # waited what ARM asked, each time
    assert _attempts(world, "GET") == READ_RETRIES + 1

    _fault(world, "GET", None, retry_after=1)
    with pytest.raises(HttpResponseError) as refused:
        adapter.read()
    assert refused.value.status_code == 429
    assert _attempts(world, "GET") == READ_RETRIES + 1
