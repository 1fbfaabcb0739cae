"""ARM throttling (issue 16 item 11): token buckets per subscription, caller and operation class,
through the real azure-mgmt-network SDK. The session's emulator runs with `--throttle off`; each test
turns it on through PUT /_emulator/throttle in a subscription of its own, and turns it off again."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResponseNotReadError
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkSecurityGroup

from emulator.throttle import Limit, Throttle, kind_of, parse_limits
from localrig.credentials import StaticTokenCredential
from localrig.emulator_client import EmulatorClient

LOCATION = "westeurope"
READS = "x-ms-ratelimit-remaining-subscription-reads"
GLOBAL_READS = "x-ms-ratelimit-remaining-subscription-global-reads"
WRITES = "x-ms-ratelimit-remaining-subscription-writes"
DELETES = "x-ms-ratelimit-remaining-subscription-deletes"
DEFAULT_LIMITS = "reads=250/25,writes=200/10,deletes=200/10"
# ARM's bucket sizes with the refill slowed down, so that counts stay exact on a loaded machine (at
# 25/s a token comes back every 40 ms); tests of refill move the throttle's clock instead.
EXACT_LIMITS = "reads=250/0.001,writes=200/0.001,deletes=200/0.001"


class World:
    """One test's subscription, resource group and callers, with the throttle on."""

    def __init__(self, arm: EmulatorClient) -> None:
        self.arm = arm
        self.subscription = str(uuid.uuid4())
        self.group = f"rg-{uuid.uuid4().hex[:8]}"
        arm.admin_ok(
            "PUT",
            f"/_emulator/resources/subscriptions/{self.subscription}/resourceGroups/{self.group}",
            {"location": LOCATION},
        )
        self.seen: list[tuple[str, str, int, dict[str, str], str]] = []

    def client(self, principal: str = "alice", **kwargs: Any) -> NetworkManagementClient:
        """An SDK client whose every answer (polls and retries included) is recorded in `seen`."""

        def hook(response: Any) -> None:
            http = response.http_response
            try:
                text = http.text()
            except ResponseNotReadError:  # a long-running operation's first answer is streamed
                text = ""
            self.seen.append((principal, http.request.method, http.status_code, dict(http.headers), text))

        credential = StaticTokenCredential(principal_id=f"{principal}-{self.subscription}")
        return self.arm.client(
            NetworkManagementClient,
            subscription_id=self.subscription,
            credential=credential,
            raw_response_hook=hook,
            **kwargs,
        )

    def read(self, net: NetworkManagementClient) -> None:
        """One read: the group's NSGs (one page)."""
        list(net.network_security_groups.list(self.group))

    def throttle(self, **settings: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self.arm.admin_ok("PUT", "/_emulator/throttle", settings)
        return answer

    def buckets(self, kind: str) -> dict[str, dict[str, Any]]:
        """This subscription's buckets of one kind, by scope (`principal` buckets keyed by caller)."""
        state = self.arm.admin_ok("GET", "/_emulator/throttle")
        found = {}
        for bucket in state["buckets"]:
            if bucket["subscription"] == self.subscription and bucket["kind"] == kind:
                found["global" if bucket["scope"] == "global" else bucket["caller"].split("-")[0]] = bucket
        return found


@pytest.fixture
def world(arm_emulator: EmulatorClient) -> Iterator[World]:
    arm_emulator.admin_ok("PUT", "/_emulator/throttle", {"enabled": True, "limits": EXACT_LIMITS})
    try:
        yield World(arm_emulator)
    finally:
        arm_emulator.admin_ok(
            "PUT",
            "/_emulator/throttle",
            {"enabled": False, "limits": DEFAULT_LIMITS, "global_factor": 15, "reset": True},
        )


def test_the_suite_runs_unthrottled_by_default(arm_emulator: EmulatorClient) -> None:
    seen: list[dict[str, str]] = []
    net = arm_emulator.client(
        NetworkManagementClient, raw_response_hook=lambda r: seen.append(dict(r.http_response.headers))
    )
    list(net.network_security_groups.list_all())
    assert arm_emulator.admin_ok("GET", "/_emulator/throttle")["enabled"] is False
    assert not any(name.lower().startswith("x-ms-ratelimit") for name in seen[-1])


def test_budget_headers_count_down_on_reads_writes_deletes_and_polls(world: World) -> None:
    net = world.client()
    list(net.network_security_groups.list_all())
    assert world.seen[-1][3][READS] == "249"
    assert world.seen[-1][3][GLOBAL_READS] == str(250 * 15 - 1)

    net.network_security_groups.begin_create_or_update(
        world.group, "nsg1", NetworkSecurityGroup(location=LOCATION)
    ).result()
    put = [s for s in world.seen if s[1] == "PUT"]
    assert put[0][3][WRITES] == "199" and READS not in put[0][3]
    # ARMPolling reads the Azure-AsyncOperation URL and then the resource: two more reads.
    polls = [s for s in world.seen if s[1] == "GET"][1:]
    assert [p[3][READS] for p in polls] == ["248", "247"]

    net.network_security_groups.get(world.group, "nsg1")
    assert world.seen[-1][3][READS] == "246"
    net.network_security_groups.begin_delete(world.group, "nsg1").result()
    delete = [s for s in world.seen if s[1] == "DELETE"]
    assert delete[0][3][DELETES] == "199"
    assert world.seen[-1][3][READS] == "245"  # the delete's Location poll

    # The admin endpoints cost nothing, and show the same budget.
    assert world.buckets("reads")["alice"]["taken"] == 5
    assert world.buckets("writes")["alice"]["taken"] == 1
    assert world.buckets("deletes")["global"]["taken"] == 1


def test_a_list_costs_one_read_per_page(world: World, arm_emulator: EmulatorClient) -> None:
    for index in range(5):
        arm_emulator.put_resource(
            f"/subscriptions/{world.subscription}/resourceGroups/{world.group}/providers/"
            f"Microsoft.Network/networkSecurityGroups/nsg{index}",
            {"location": LOCATION},
        )
    before = arm_emulator.admin_ok("GET", "/_emulator/config")["page_size"]
    arm_emulator.admin_ok("POST", "/_emulator/config", {"page_size": 2})
    try:
        names = [nsg.name for nsg in world.client().network_security_groups.list_all()]
    finally:
        arm_emulator.admin_ok("POST", "/_emulator/config", {"page_size": before})
    assert sorted(names) == [f"nsg{i}" for i in range(5)]
    assert [s[3][READS] for s in world.seen] == ["249", "248", "247"]  # three pages


def test_a_burst_beyond_the_bucket_gets_429_and_the_sdk_retry_then_succeeds(
    world: World, arm_emulator: EmulatorClient
) -> None:
    world.throttle(limits={"reads": {"size": 5, "refill_per_second": 0.5}})
    before = arm_emulator.requests()["throttled_429s"]
    net = world.client()
    for _ in range(6):  # the sixth finds the bucket empty; azure-core waits Retry-After and retries
        list(net.network_security_groups.list(world.group))

    statuses = [s[2] for s in world.seen]
    assert statuses == [200] * 5 + [429, 200]
    _, _, _, headers, text = world.seen[5]
    assert headers["Retry-After"] in ("1", "2")  # a token every 2 s, some already back
    assert headers[READS] == "0"
    error = json.loads(text)["error"]
    assert error["code"] == "SubscriptionRequestsThrottled"
    assert f"Please try again after '{headers['Retry-After']}' seconds" in error["message"]
    assert arm_emulator.requests()["throttled_429s"] == before + 1
    state = world.buckets("reads")
    assert state["alice"]["throttled_429s"] == 1
    assert state["global"]["throttled_429s"] == 0


def test_buckets_refill_over_time(world: World) -> None:
    world.throttle(limits="reads=3/0.2")
    net = world.client(retry_total=0)
    for _ in range(3):
        world.read(net)
    with pytest.raises(HttpResponseError) as refused:
        world.read(net)
    assert refused.value.status_code == 429
    assert refused.value.error is not None and refused.value.error.code == "SubscriptionRequestsThrottled"

    remaining = world.throttle(advance_seconds=10)  # the throttle's clock, not a sleep
    assert [b["remaining"] for b in remaining["buckets"] if b["caller"].startswith("alice")] == [
        pytest.approx(2, abs=0.5)
    ]
    world.read(net)
    world.read(net)
    with pytest.raises(HttpResponseError):
        world.read(net)

    world.throttle(advance_seconds=600)  # never more than the bucket holds
    assert world.buckets("reads")["alice"]["remaining"] == pytest.approx(3, abs=0.01)


def test_each_caller_has_its_own_bucket_and_all_share_the_global_one(world: World) -> None:
    world.throttle(limits="reads=3/0.01", global_factor=2)  # global: 6 reads
    alice, bob = world.client("alice", retry_total=0), world.client("bob", retry_total=0)
    for _ in range(3):
        world.read(alice)
    with pytest.raises(HttpResponseError):
        world.read(alice)

    world.read(bob)
    assert world.seen[-1][0] == "bob"
    assert world.seen[-1][3][READS] == "2"  # bob's own bucket is untouched by alice
    assert world.seen[-1][3][GLOBAL_READS] == "2"  # 6 - alice's 3 - bob's 1
    world.read(bob)
    world.read(bob)

    carol = world.client("carol", retry_total=0)
    with pytest.raises(HttpResponseError) as refused:  # carol has tokens, the subscription has none
        world.read(carol)
    assert refused.value.status_code == 429
    assert "all principals" in str(refused.value.message)
    buckets = world.buckets("reads")
    assert buckets["alice"]["throttled_429s"] == 1
    assert buckets["carol"]["throttled_429s"] == 0
    assert buckets["global"]["throttled_429s"] == 1

    # Writes have their own buckets: the empty read budget does not block them.
    carol.network_security_groups.begin_create_or_update(
        world.group, "nsg-w", NetworkSecurityGroup(location=LOCATION), polling=False
    )
    assert world.seen[-1][2] == 201


def test_the_throttle_can_be_switched_off_at_run_time(world: World) -> None:
    world.throttle(limits="reads=1/0.01")
    net = world.client(retry_total=0)
    world.read(net)
    with pytest.raises(HttpResponseError):
        world.read(net)
    assert world.throttle(enabled=False)["enabled"] is False
    world.read(net)
    assert world.seen[-1][2] == 200
    assert READS not in world.seen[-1][3]


def test_the_admin_endpoint_refuses_nonsense(arm_emulator: EmulatorClient) -> None:
    for body in (
        {"enabled": "yes"},
        {"limits": "reads=0/1"},
        {"limits": "lists=5/1"},
        {"limits": {"reads": {"size": 5}}},
        {"advance_seconds": -1},
        {"global_factor": 0.5},
        {"colour": "red"},
        {},
    ):
        status, answer = arm_emulator.admin("PUT", "/_emulator/throttle", body)
        assert status == 400, body
        assert answer["error"]["code"] == "InvalidAdminRequest"
    assert arm_emulator.admin_ok("GET", "/_emulator/throttle")["enabled"] is False


# --- the buckets themselves, with an injected clock ------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_arithmetic() -> None:
    clock = FakeClock()
    throttle = Throttle(
        {"reads": Limit(250, 25), "writes": Limit(200, 10), "deletes": Limit(200, 10)}, clock=clock
    )
    path = "/subscriptions/S1/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups"
    for expected in range(249, -1, -1):
        decision = throttle.take("GET", path, "app")
        assert decision is not None and decision.allowed
        assert decision.headers[READS] == str(expected)
    refused = throttle.take("GET", path, "app")
    assert refused is not None and not refused.allowed and refused.retry_after == 1
    clock.now += 0.5  # 12.5 tokens back
    allowed = [throttle.take("GET", path, "app") for _ in range(13)]
    assert [bool(d and d.allowed) for d in allowed] == [True] * 12 + [False]
    writes = throttle.take("PUT", path + "/x", "app")
    assert writes is not None and writes.allowed and writes.headers[WRITES] == "199"
    assert writes.headers["x-ms-ratelimit-remaining-subscription-global-writes"] == str(200 * 15 - 1)
    for _ in range(199):
        throttle.take("DELETE", path + "/x", "app")
    last = throttle.take("DELETE", path + "/x", "app")
    assert last is not None and last.headers[DELETES] == "0"
    empty = throttle.take("DELETE", path + "/x", "app")
    assert empty is not None and not empty.allowed and empty.retry_after == 1  # 10/s: 0.1 s -> 1 s
    assert throttle.take("GET", "/providers/Microsoft.Authorization/roleDefinitions", "app") is None
    assert throttle.state()["throttled_429s"] == 3


def test_retry_after_is_the_seconds_until_a_token_is_back() -> None:
    clock = FakeClock()
    throttle = Throttle({"reads": Limit(1, 0.25)}, clock=clock)
    assert throttle.take("HEAD", "/subscriptions/s/resourceGroups/rg", "a").allowed  # type: ignore[union-attr]
    refused = throttle.take("GET", "/subscriptions/s/resourceGroups/rg", "a")
    assert refused is not None and refused.retry_after == 4
    clock.now += 3
    refused = throttle.take("GET", "/subscriptions/s/resourceGroups/rg", "a")
    assert refused is not None and refused.retry_after == 1


def test_limits_and_classes() -> None:
    assert parse_limits("off") is None
    assert parse_limits("on") == {
        "reads": Limit(250, 25),
        "writes": Limit(200, 10),
        "deletes": Limit(200, 10),
    }
    assert parse_limits("writes=5/0.5")["writes"] == Limit(5, 0.5)  # type: ignore[index]
    for bad in ("reads=5", "reads=0/1", "reads=5/0", "lists=1/1", "reads=a/b"):
        with pytest.raises(ValueError):
            parse_limits(bad)
    assert [kind_of(m) for m in ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE")] == [
        "reads",
        "reads",
        "writes",
        "writes",
        "writes",
        "deletes",
    ]
