"""The per-target lease and the pending-hint book on Azurite: one writer, coalesced hints, takeover
after a crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from shared import enforcement
from shared.lease import HintBook, LeaseBusyError, TableLeases
from shared.settings import Settings
from shared.storage import table
from tests.integration.conftest import World


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


def test_one_holder_busy_marks_dirty_and_holder_runs_again(storage_settings: Settings) -> None:
    clock = Clock()
    leases = TableLeases(table("leases", storage_settings), clock.now, 30)
    held = leases.acquire("nsg|a")
    with pytest.raises(LeaseBusyError):
        leases.acquire("nsg|a")  # a second instance: asks the holder for another pass
    with pytest.raises(LeaseBusyError):
        leases.acquire("nsg|a")
    other = leases.acquire("nsg|b")  # other targets are independent
    assert leases.release(held) is True  # one more pass requested: still held
    with pytest.raises(LeaseBusyError):
        leases.acquire("nsg|a")
    assert leases.release(held) is True
    assert leases.release(held) is False  # now released
    again = leases.acquire("nsg|a")
    assert leases.release(again) is False
    assert leases.release(other) is False


def test_a_crashed_holders_lease_expires_and_is_taken_over(storage_settings: Settings) -> None:
    clock = Clock()
    leases = TableLeases(table("leases", storage_settings), clock.now, 30)
    crashed = leases.acquire("fw|x")
    clock.moment += timedelta(seconds=29)
    with pytest.raises(LeaseBusyError):
        leases.acquire("fw|x")
    clock.moment += timedelta(seconds=2)
    successor = leases.acquire("fw|x")
    assert leases.release(crashed) is False  # the old holder cannot release the new holder's lease
    with pytest.raises(LeaseBusyError):
        leases.acquire("fw|x")
    assert leases.release(successor) is True
    assert leases.release(successor) is False


def test_hint_book_allows_one_pending_hint_per_target(storage_settings: Settings) -> None:
    clock = Clock()
    hints = HintBook(table("leases", storage_settings), clock.now, grace_seconds=15)
    assert hints.claim("nsg|a") is True
    assert hints.claim("nsg|a") is False
    assert hints.claim("nsg|b") is True
    hints.clear("nsg|a")  # its converge started: the next grant needs a new hint
    assert hints.claim("nsg|a", delay=3) is True
    clock.moment += timedelta(seconds=10)  # the hint is due in 3 s: still counted for a moment
    assert hints.claim("nsg|a") is False
    # A hint due 3 s after its claim that has not started 15 s later is taken as lost: the next trigger
    # sends its own within seconds (it used to be swallowed for 120 s after a crash).
    clock.moment += timedelta(seconds=9)
    assert hints.claim("nsg|a") is True
    # A requeue (busy lease) claims whatever is there and is due when the lease would lapse.
    assert hints.claim("nsg|a", delay=31, force=True) is True
    clock.moment += timedelta(seconds=40)
    assert hints.claim("nsg|a") is False
    clock.moment += timedelta(seconds=10)
    assert hints.claim("nsg|a") is True


def test_drop_gives_the_lease_back_even_when_a_pass_was_requested(storage_settings: Settings) -> None:
    clock = Clock()
    leases = TableLeases(table("leases", storage_settings), clock.now, 30)
    held = leases.acquire("nsg|c")
    with pytest.raises(LeaseBusyError):
        leases.acquire("nsg|c")  # marks it dirty
    leases.drop(held)
    assert leases.release(leases.acquire("nsg|c")) is False


def expiry_of(settings: Settings, key: str) -> datetime:
    row = table("leases", settings).get_entity("lease", TableLeases._row(key))
    return datetime.fromisoformat(str(row["expires"]))


def test_a_working_holder_renews_its_lease_so_it_can_be_short(storage_settings: Settings) -> None:
    clock = Clock()
    leases = TableLeases(table("leases", storage_settings), clock.now, 30)
    held = leases.acquire("nsg|renewed")
    heartbeat = leases.keep_alive(held, every=0.02)
    try:
        clock.moment += timedelta(seconds=25)
        renewed_until = clock.moment + timedelta(seconds=30)
        deadline = time.monotonic() + 10
        while expiry_of(storage_settings, "nsg|renewed") < renewed_until:
            assert time.monotonic() < deadline, "the lease was not renewed"
            time.sleep(0.02)
        # Stop renewing first: a heartbeat racing the competitor's conditional writes is not what
        # this test is about; the renewed expiry alone must keep the lease held.
        heartbeat.stop()
        clock.moment += timedelta(seconds=20)  # 45 s after acquiring: past the first expiry
        with pytest.raises(LeaseBusyError):
            leases.acquire("nsg|renewed")
    finally:
        heartbeat.stop()
    assert not heartbeat.running
    assert leases.release(held) is True  # the busy acquire above asked for one more pass
    assert leases.release(held) is False


def test_a_dead_holder_stops_renewing_and_its_target_is_free_within_one_lease(
    storage_settings: Settings,
) -> None:
    clock = Clock()
    leases = TableLeases(table("leases", storage_settings), clock.now, 30)
    crashed = leases.acquire("nsg|dead")
    leases.keep_alive(crashed, every=0.02).stop()  # the process died: nothing renews any more
    clock.moment += timedelta(seconds=31)
    successor = leases.acquire("nsg|dead")
    assert leases.renew(crashed) is False  # not the dead holder's any more
    assert leases.release(successor) is False


def test_the_default_lease_is_shorter_than_the_expiry_timer_period() -> None:
    from shared.settings import load_settings

    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    # README, "How rules are enforced": a crashed converge delays a close by at most one lease.
    assert settings.converge_lease_seconds <= 60


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lease-") and t.is_alive()]


def test_converge_stops_renewing_when_it_ends_or_dies(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_db, 22)

    def crash(step: str) -> None:
        if step == "read":
            raise enforcement.SimulatedCrash(step)

    world.deps.checkpoint = crash
    with pytest.raises(enforcement.SimulatedCrash):
        enforcement.handle_grant(world.deps, grant.grant_id)
    assert lease_threads() == []  # a dead process renews nothing: the lease lapses on its own
    world.deps.checkpoint = lambda step: None
    world.clock.advance(world.settings.converge_lease_seconds + 1)
    (outcome,) = enforcement.handle_grant(world.deps, grant.grant_id)
    assert outcome.wrote and not outcome.busy
    assert lease_threads() == []
