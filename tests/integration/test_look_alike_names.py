"""Issue 15 item 2 end to end: two resource groups whose names Python's `lower()` makes one (`rgk-…`
and `rg\u212a-…`, KELVIN SIGN) are two groups to ARM, to the emulator and now to Portcullis. The owner
of the look-alike cannot read, replace or delete the other's policy, and a refused initiate stays
refused however the decision cache was warmed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from localrig.emulator_client import EmulatorClient
from localrig.estates.sample import Estate
from shared.api import defender_routes
from tests.integration.jit_world import API_VERSION, OWNER, Person, World, app_env, end_time

KELVIN = "\u212a"


class Pair:
    def __init__(self, world: World) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.world = world
        self.victim = Estate(world.subscription, f"rgk-{suffix}")
        self.mallory_estate = Estate(world.subscription, f"rg{KELVIN}-{suffix}")
        world.arm.seed(self.victim.resources())
        world.arm.seed(self.mallory_estate.resources())
        self.owner = Person(str(uuid.uuid4()), "owner@contoso.com")
        self.mallory = Person(str(uuid.uuid4()), "mallory@contoso.com")
        world.assign(self.scope(self.victim), OWNER, self.owner.object_id)
        world.assign(self.scope(self.mallory_estate), OWNER, self.mallory.object_id)

    def scope(self, estate: Estate) -> str:
        return f"/subscriptions/{estate.subscription_id}/resourceGroups/{estate.resource_group}"

    def path(self, estate: Estate, suffix: str = "") -> str:
        return (
            f"{self.scope(estate)}/providers/Microsoft.Security/locations/westeurope"
            f"/jitNetworkAccessPolicies/default{suffix}{API_VERSION}"
        )

    def route(self, estate: Estate) -> dict[str, str]:
        return {
            "subscriptionId": estate.subscription_id,
            "resourceGroupName": estate.resource_group,
            "ascLocation": "westeurope",
            "jitNetworkAccessPolicyName": "default",
        }

    def call(
        self, handler: Any, method: str, estate: Estate, person: Person, body: Any = None, suffix: str = ""
    ) -> tuple[int, Any]:
        status, answer, _ = self.world.call(
            handler, method, self.path(estate, suffix), person, body, self.route(estate)
        )
        return status, answer

    def initiate_body(self, estate: Estate) -> dict[str, Any]:
        return {
            "virtualMachines": [
                {
                    "id": estate.vm_id(estate.vm_web),
                    "ports": [{"number": 22, "endTimeUtc": end_time(0.5), "allowedSourceAddressPrefix": "*"}],
                }
            ],
            "justification": "look-alike test",
        }


@pytest.fixture
def pair(storage_env: dict[str, str], arm_emulator: EmulatorClient) -> Pair:
    return Pair(World.create(app_env(storage_env, arm_emulator), arm_emulator))


def test_the_owner_of_a_look_alike_group_cannot_read_replace_or_delete_anothers_policy(pair: Pair) -> None:
    victim, look_alike = pair.victim, pair.mallory_estate
    status, original = pair.call(defender_routes.put_policy, "PUT", victim, pair.owner, victim.policy_body())
    assert status == 200, original

    status, answer = pair.call(defender_routes.get_policy, "GET", look_alike, pair.mallory)
    assert status == 404, answer

    replacement = look_alike.policy_body(max_duration="PT1H")
    status, answer = pair.call(defender_routes.put_policy, "PUT", look_alike, pair.mallory, replacement)
    assert status in (200, 201), answer
    status, answer = pair.call(defender_routes.delete_policy, "DELETE", look_alike, pair.mallory)
    assert status == 200, answer

    status, still = pair.call(defender_routes.get_policy, "GET", victim, pair.owner)
    assert status == 200, still
    assert still["properties"]["virtualMachines"] == original["properties"]["virtualMachines"]
    assert still["id"] == original["id"]


def test_a_refused_initiate_stays_refused_after_a_look_alike_was_allowed(pair: Pair) -> None:
    victim, look_alike = pair.victim, pair.mallory_estate
    assert pair.call(defender_routes.put_policy, "PUT", victim, pair.owner, victim.policy_body())[0] == 200
    assert (
        pair.call(defender_routes.put_policy, "PUT", look_alike, pair.mallory, look_alike.policy_body())[0]
        == 200
    )

    status, answer = pair.call(
        defender_routes.initiate,
        "POST",
        look_alike,
        pair.mallory,
        pair.initiate_body(look_alike),
        "/initiate",
    )
    assert status == 202, answer  # her own VM: allowed, and the decision is cached

    status, answer = pair.call(
        defender_routes.initiate, "POST", victim, pair.mallory, pair.initiate_body(victim), "/initiate"
    )
    assert status == 403, answer
    assert (
        pair.world.services.grants.policy_history(
            pair.world.services.policies.get(_ref(victim)).ref  # type: ignore[union-attr]
        )
        == []
    )


def _ref(estate: Estate) -> Any:
    from shared.policy_store import policy_ref

    return policy_ref(estate.subscription_id, estate.resource_group, "westeurope", "default")
