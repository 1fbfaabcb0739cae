"""The per-target lease and the pending-hint book on Azurite: one writer, coalesced hints, takeover
after a crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.lease import HintBook, LeaseBusyError, TableLeases
from shared.settings import Settings
from shared.storage import table


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
    hints = HintBook(table("leases", storage_settings), clock.now, stale_seconds=60)
    assert hints.claim("nsg|a") is True
    assert hints.claim("nsg|a") is False
    assert hints.claim("nsg|b") is True
    hints.clear("nsg|a")  # its converge started: the next grant needs a new hint
    assert hints.claim("nsg|a") is True
    clock.moment += timedelta(seconds=61)  # a lost hint does not block forever
    assert hints.claim("nsg|a") is True


def test_drop_gives_the_lease_back_even_when_a_pass_was_requested(storage_settings: Settings) -> None:
    clock = Clock()
    leases = TableLeases(table("leases", storage_settings), clock.now, 30)
    held = leases.acquire("nsg|c")
    with pytest.raises(LeaseBusyError):
        leases.acquire("nsg|c")  # marks it dirty
    leases.drop(held)
    assert leases.release(leases.acquire("nsg|c")) is False
