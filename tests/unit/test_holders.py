"""Who holds access now across every VM (`GET /api/grants?active=true`, shared.actions.holders): the
page rule as a pure function, the cursor's shape, and the visibility rule with the in-memory
collaborators (a reader of one resource group's policies sees none of another's grants; RBAC is asked
once per policy, not per grant). The same through the host, Azurite and the emulator:
tests/integration/test_end_to_end_requests.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.actions.holders import who_holds_access
from shared.actions.initiate import InitiateAccess
from shared.authz import READ_POLICY_ACTION
from shared.grants import GrantPage, is_open_cursor, take_page
from shared.model import Grant, PolicyRef, PortStatus, Principal, PrincipalSource, VmRef
from tests.unit.test_approvals import ALICE, NOW, SUB, ask, world_with

pytestmark = pytest.mark.unit

CAROL = Principal("ca401000-0000-4000-8000-000000000016", "carol", PrincipalSource.JWT)
OTHER_RG = PolicyRef(SUB, "rg2", "westeurope", "default")


def test_a_page_stops_at_its_limit_and_names_the_last_row_read() -> None:
    world, _ = world_with(None)
    grants = [InitiateAccess(world.services)(ask()).request.grants[0] for _ in range(3)]
    rows: list[tuple[str, Grant | None]] = [(f"k{n}", g) for n, g in enumerate(grants)]
    assert take_page(rows, lambda g: True, limit=2) == GrantPage(grants[:2], "k1")
    assert take_page(rows, lambda g: True, limit=3) == GrantPage(grants, None)  # nothing left: no cursor
    # Rows the caller may not see still count against the scan budget: a short page that goes on.
    assert take_page(rows, lambda g: g is grants[2], limit=5, scan_limit=2) == GrantPage([], "k1")
    # A row whose grant is not written yet (the index goes first) is skipped.
    assert take_page([("k0", None), *rows[1:]], lambda g: True) == GrantPage(grants[1:], None)


def test_the_cursor_is_an_expiry_row_key_and_nothing_else() -> None:
    assert is_open_cursor(f"20300101T120000.000000Z|{'a' * 32}-001")
    for text in ("", "x", f"20300101T120000Z|{'a' * 32}-001", f"20300101T120000.000000Z|{'A' * 32}-001", "'"):
        assert not is_open_cursor(text)


def _vm(group: str, name: str) -> VmRef:
    return VmRef.parse(
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}",
        "vm",
    )


def test_a_reader_of_one_resource_group_sees_its_open_grants_and_none_of_anothers() -> None:
    world, clock = world_with(None)
    first = InitiateAccess(world.services)(ask(hours=1)).request.grants[0]
    later = replace(first, grant_id=f"{1:032x}-000", request_id=f"{1:032x}", vm=_vm("rg1", "vm2"))
    later = replace(later, end_time=NOW + timedelta(hours=2))
    ended = replace(first, grant_id=f"{2:032x}-000", request_id=f"{2:032x}", status=PortStatus.REVOKED)
    # Under a policy in another resource group (same requester): carol may read only rg1's policies.
    elsewhere = replace(first, grant_id=f"{3:032x}-000", request_id=f"{3:032x}", policy=OTHER_RG)
    elsewhere = replace(elsewhere, vm=_vm("rg2", "vm9"))
    for grant in (later, ended, elsewhere):
        world.requests.grants[grant.grant_id] = grant
    world.roles.grant(CAROL.object_id, f"/subscriptions/{SUB}/resourceGroups/rg1", READ_POLICY_ACTION)
    asked: list[str] = []
    check = world.services.authorizer.check

    def counting(principal: Principal, action: str, scope: str) -> bool:
        asked.append(scope)
        return check(principal, action, scope)

    world.services.authorizer.check = counting  # type: ignore[method-assign]
    page = who_holds_access(world.services, CAROL)
    assert [g.grant_id for g in page.grants] == [first.grant_id, later.grant_id]  # soonest end first
    assert page.cursor is None
    assert sorted(asked) == sorted({OTHER_RG.id, first.policy.id})  # once per policy, not per grant
    # The requester sees their own everywhere; someone with no rights sees nothing.
    mine = {g.grant_id for g in who_holds_access(world.services, ALICE).grants}
    assert mine == {first.grant_id, later.grant_id, elsewhere.grant_id}
    frank = Principal("f4a4c000-0000-4000-8000-000000000018", "frank", PrincipalSource.JWT)
    world.roles.grant(frank.object_id, f"/subscriptions/{SUB}/resourceGroups/rg9", READ_POLICY_ACTION)
    assert who_holds_access(world.services, frank).grants == []
    # Past its end a grant no longer holds access, before the sweep revokes it.
    clock.now = NOW + timedelta(hours=1, minutes=30)
    assert [g.grant_id for g in who_holds_access(world.services, CAROL).grants] == [later.grant_id]


def test_following_the_cursor_lists_every_open_grant_once() -> None:
    world, _ = world_with(None)
    first = InitiateAccess(world.services)(ask()).request.grants[0]
    for n in range(1, 7):  # six more on other VMs, ending a minute apart
        copy = replace(
            first, grant_id=f"{n:032x}-000", request_id=f"{n:032x}", end_time=NOW + timedelta(minutes=n)
        )
        world.requests.grants[copy.grant_id] = copy
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = who_holds_access(world.services, ALICE, cursor, limit=3, scan_limit=3)
        seen += [g.grant_id for g in page.grants]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == [f"{n:032x}-000" for n in range(1, 7)] + [first.grant_id]
