"""One writer per target across every instance: a lease entity in Table storage, taken and given back
with ETags, expiring on its own if its holder dies.

A converge that finds the target leased marks the lease `dirty` instead of waiting: the holder,
before letting go, sees the mark and converges once more (it may have read the grants before the
newcomer's grant was written). So concurrent hints coalesce into one more pass, never into a lost one.
If the holder crashed, the lease expires and the next converge (message retry or timer) takes it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

log = logging.getLogger("portcullis.lease")
PARTITION = "lease"
_ATTEMPTS = 5


@dataclass
class Lease:
    key: str
    owner: str
    etag: str


class LeaseBusyError(RuntimeError):
    """Another instance holds the target; it has been asked to converge again. `remaining_seconds`:
    how long the lease still runs if its holder stops renewing it (requeue the work after that)."""

    def __init__(self, key: str, remaining_seconds: float = 0.0) -> None:
        super().__init__(key)
        self.remaining_seconds = max(0.0, remaining_seconds)


class TableLeases:
    def __init__(self, table: TableClient, now: Callable[[], datetime], seconds: int) -> None:
        self._table = table
        self._now = now
        self._seconds = seconds

    @staticmethod
    def _row(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def acquire(self, key: str) -> Lease:
        """Take the lease or raise LeaseBusyError (after asking the holder for one more pass)."""
        row = self._row(key)
        owner = uuid.uuid4().hex
        expires = (self._now() + timedelta(seconds=self._seconds)).isoformat()
        entity = {
            "PartitionKey": PARTITION,
            "RowKey": row,
            "owner": owner,
            "expires": expires,
            "dirty": False,
            "target": key[:1000],
        }
        for _ in range(_ATTEMPTS):
            try:
                meta = self._table.create_entity(entity)
                return Lease(key, owner, str(meta["etag"]))
            except ResourceExistsError:
                pass
            try:
                current = self._table.get_entity(PARTITION, row)
            except ResourceNotFoundError:
                continue
            etag = str(current.metadata["etag"])
            expires_at = datetime.fromisoformat(str(current["expires"]))
            remaining = (expires_at - self._now()).total_seconds()
            if expires_at <= self._now():
                try:
                    meta = self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                    log.warning("lease.taken_over", extra={"target": key, "previous": current.get("owner")})
                    return Lease(key, owner, str(meta["etag"]))
                except (HttpResponseError, ResourceNotFoundError):
                    continue
            if current.get("dirty"):
                raise LeaseBusyError(key, remaining)
            try:
                self._table.update_entity(
                    {"PartitionKey": PARTITION, "RowKey": row, "dirty": True},
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                raise LeaseBusyError(key, remaining)
            except (HttpResponseError, ResourceNotFoundError):
                continue  # it changed under us: look again
        raise LeaseBusyError(key, self._seconds)

    def release(self, lease: Lease) -> bool:
        """Give the lease back. True: someone asked for another pass; the caller still holds it."""
        for _ in range(_ATTEMPTS):
            try:
                return self._release_once(lease)
            except HttpResponseError as error:
                if error.status_code not in (409, 412):
                    raise
        return False  # it keeps changing under us: it expires on its own

    def drop(self, lease: Lease) -> None:
        """Give the lease back whatever was asked meanwhile (after a failure, or out of passes): the
        hint that asked is retried or the timer comes by."""
        row = self._row(lease.key)
        for _ in range(_ATTEMPTS):
            try:
                current = self._table.get_entity(PARTITION, row)
            except ResourceNotFoundError:
                return
            if current.get("owner") != lease.owner:
                return
            try:
                self._table.delete_entity(
                    PARTITION,
                    row,
                    etag=str(current.metadata["etag"]),
                    match_condition=MatchConditions.IfNotModified,
                )
                return
            except ResourceNotFoundError:
                return
            except HttpResponseError as error:
                if error.status_code != 412:
                    raise

    def renew(self, lease: Lease) -> bool:
        """Push the lease's expiry one lease period from now; False if it is no longer ours."""
        row = self._row(lease.key)
        for _ in range(_ATTEMPTS):
            try:
                current = self._table.get_entity(PARTITION, row)
            except ResourceNotFoundError:
                return False
            if current.get("owner") != lease.owner:
                return False
            expires = (self._now() + timedelta(seconds=self._seconds)).isoformat()
            try:
                # MERGE keeps `dirty`: a pass asked for meanwhile is still run.
                self._table.update_entity(
                    {"PartitionKey": PARTITION, "RowKey": row, "expires": expires},
                    mode=UpdateMode.MERGE,
                    etag=str(current.metadata["etag"]),
                    match_condition=MatchConditions.IfNotModified,
                )
                return True
            except ResourceNotFoundError:
                return False
            except HttpResponseError as error:
                if error.status_code != 412:
                    raise
        return True  # it kept changing under us, and only its holder (us) or a dirty mark changes it

    def keep_alive(self, lease: Lease, every: float | None = None) -> Heartbeat:
        """Renew `lease` in the background (every third of a lease period) until `stop()`. A process
        that dies stops renewing, so its target is free again within one lease period."""
        heartbeat = Heartbeat(self, lease, every if every is not None else self._seconds / 3)
        heartbeat.start()
        return heartbeat

    def _release_once(self, lease: Lease) -> bool:
        row = self._row(lease.key)
        try:
            self._table.delete_entity(
                PARTITION, row, etag=lease.etag, match_condition=MatchConditions.IfNotModified
            )
            return False
        except ResourceNotFoundError:
            return False
        except HttpResponseError as error:
            if error.status_code != 412:
                raise
        try:
            current = self._table.get_entity(PARTITION, row)
        except ResourceNotFoundError:
            return False
        if current.get("owner") != lease.owner:
            return False  # it expired and someone else took it over: theirs now
        if current.get("dirty"):
            expires = (self._now() + timedelta(seconds=self._seconds)).isoformat()
            meta = self._table.update_entity(
                {
                    "PartitionKey": PARTITION,
                    "RowKey": row,
                    "owner": lease.owner,
                    "expires": expires,
                    "dirty": False,
                    "target": lease.key[:1000],
                },
                mode=UpdateMode.REPLACE,
                etag=str(current.metadata["etag"]),
                match_condition=MatchConditions.IfNotModified,
            )
            lease.etag = str(meta["etag"])
            return True
        lease.etag = str(current.metadata["etag"])
        return self._release_once(lease)


class Heartbeat:
    """A daemon thread renewing one lease; renewal failures are logged, never raised (the lease then
    lapses and another instance converges the target, which is safe)."""

    def __init__(self, leases: TableLeases, lease: Lease, every: float) -> None:
        self._leases = leases
        self._lease = lease
        self._every = max(every, 0.01)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.key[:40]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopped.wait(self._every):
            try:
                if not self._leases.renew(self._lease):
                    return
            except Exception as error:  # noqa: BLE001 - a missed renewal only shortens the lease
                log.warning("lease.renew_failed", extra={"target": self._lease.key, "error": repr(error)})


HINT_PARTITION = "hint"


class HintBook:
    """At most one pending converge hint per target: a burst of grants enqueues one message, not fifty.

    `claim(key, delay)` before enqueueing a hint visible in `delay` seconds (False: a hint is already
    waiting, whose converge has not started and so will see our grant); `clear` when a converge pass
    starts, before it reads the grants. A claim counts only until its hint should have been picked up
    (`delay` + `grace_seconds`): if that hint was lost or its converge died before clearing, the next
    trigger claims anew within seconds instead of being swallowed for minutes.
    """

    def __init__(self, table: TableClient, now: Callable[[], datetime], grace_seconds: int = 15) -> None:
        self._table = table
        self._now = now
        self._grace = timedelta(seconds=grace_seconds)

    def claim(self, key: str, delay: float = 0, *, force: bool = False) -> bool:
        """True: the caller must send the hint. `force`: claim whatever is there (a requeue)."""
        row = TableLeases._row(key)
        due = self._now() + timedelta(seconds=delay)
        entity = {
            "PartitionKey": HINT_PARTITION,
            "RowKey": row,
            "claimed": self._now().isoformat(),
            "due": due.isoformat(),
        }
        if force:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            return True
        try:
            self._table.create_entity(entity)
            return True
        except ResourceExistsError:
            pass
        try:
            current = self._table.get_entity(HINT_PARTITION, row)
        except ResourceNotFoundError:
            return self.claim(key, delay)
        current_due = datetime.fromisoformat(str(current.get("due") or current["claimed"]))
        if current_due + self._grace > self._now():
            return False
        try:
            self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=str(current.metadata["etag"]),
                match_condition=MatchConditions.IfNotModified,
            )
        except (HttpResponseError, ResourceNotFoundError):
            return False  # someone else renewed it a moment ago
        return True

    def clear(self, key: str) -> None:
        self._table.delete_entity(HINT_PARTITION, TableLeases._row(key))


TARGET_PARTITION = "target"


class TargetRegistry:
    """Every target that holds rules of ours, so the reconcile timer still visits it after its policy
    is deleted or its grants' hints were lost (nothing of ours may outlive its grant unseen)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def note(self, key: str, holds_ours: bool) -> None:
        row = TableLeases._row(key)
        if holds_ours:
            self._table.upsert_entity({"PartitionKey": TARGET_PARTITION, "RowKey": row, "target": key})
        else:
            self._table.delete_entity(TARGET_PARTITION, row)

    def all(self) -> list[str]:
        rows = self._table.query_entities(f"PartitionKey eq '{TARGET_PARTITION}'", select=["target"])
        return [str(row["target"]) for row in rows]
