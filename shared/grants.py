"""The grant store on Table storage (implements shared.model.GrantStore), written before any rule opens.

Tables (all prefixed with settings.table_prefix), keys, and the access pattern each serves:

- `grants`: PK request id, RK grant id (and `request` for the header row): request by id
  (one partition), grant by id (point read).
- `grantsbyvm`: PK sha256(VM id), RK grant id: grants on a VM (`GET /api/grants?vm=`), supersede.
- `grantsbytarget`: PK sha256(TargetRef.key), RK grant id: the unsettled grants on target T. A row is
  deleted once its grant is settled there (revoked and confirmed removed), so converging T never
  reads T's history.
- `grantexpiry`: PK `due`, RK `<end time>|<grant id>`: grants ending before t (one range query), and
  the open grants across every VM (`GET /api/grants?active=true`: the range after now, paged).
- `policyrequests`: PK sha256(policy id), RK `<inverted start>|<request id>`: a policy's history.
- `approvals`: PK `waiting`, RK request id, with the approvers: requests with something for an
  approver to decide (`GET /api/requests?status=Pending&approver=me`, the lapse timer). Written before
  the request is, deleted once nothing waits; readers re-check the request row. PK `review`, RK request
  id, with the approvers: break-glass requests no approver has reviewed yet
  (`GET /api/requests?status=ReviewRequired&approver=me`); written before the request, deleted after
  the review is.
- `requestsbyrequester`: PK the requester's object id (lower-case), RK `<inverted start>|<request id>`,
  with `ActiveUntil` (the latest end or approval deadline of its ports): a person's own requests,
  newest first, one page at a time (`GET /api/requests?requester=me[&active=true]`). Written before the
  request; `ActiveUntil` only ever moves later (before the grant write that moves an end), so
  `ActiveUntil ge now` never misses an active request. Requests recorded before this index existed
  are not in it.

Each grant row carries `Settled` (revoked and confirmed removed everywhere): the reconcile pass reads
every unsettled grant with one paged query (`list_unsettled`), not one read per target or grant.

A request's header row and all its grants share one partition and are written in one transaction,
so a request exists whole or not at all. Index rows are written *before* the records they point at
and removed *after* the record stops needing them, so an index may hold a stale row (readers re-check
the grant itself) but never misses a live grant. `grantexpiry` holds only grants not yet revoked, so
"ending before t" reads only what is still open. Grant ids are `<request id>-<nnn>`, so a grant id
names its partition.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.approval import Approval
from shared.approval import from_json as approval_from_json
from shared.approval import to_json as approval_json
from shared.model import (
    ConcurrentUpdateError,
    Grant,
    PolicyRef,
    PortStatus,
    Principal,
    PrincipalSource,
    StatusReason,
    TargetRef,
    TargetState,
    TransportProtocol,
    VmRef,
)
from shared.settings import Settings
from shared.storage import table
from shared.table_keys import hashed_key, inverted_time_key, odata_quote, time_key

REQUEST_ROW = "request"
_EXPIRY_PARTITION = "due"
_WAITING_PARTITION = "waiting"
_REVIEW_PARTITION = "review"
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
_GRANT_ID = re.compile(r"^(?P<request>[0-9a-f]{32})-(?P<index>\d{3})$")
# One transaction holds at most 100 entities: the header row plus the grants.
MAX_GRANTS_PER_REQUEST = 99
# How much of a policy's history GET returns (newest kept; Defender's own history is also bounded).
POLICY_HISTORY_LIMIT = 100
# Requests per page of a person's own list (`GET /api/requests?requester=me`); `nextLink` goes on.
REQUESTER_PAGE_SIZE = 50
# A page cursor is the last row's key: `<17-digit inverted start>|<request id>`.
_REQUESTER_ROW = re.compile(r"^\d{17}\|[0-9a-f]{32}$")
# Open grants across VMs (`GET /api/grants?active=true`): at most this many a page, and at most
# OPEN_SCAN_LIMIT index rows read for one page (a caller who may see few of them gets a short page
# with `nextLink`, so one call's cost is bounded whatever they may see).
OPEN_PAGE_SIZE = 100
OPEN_SCAN_LIMIT = 500
# Index rows are read, and their grants fetched, this many at a time.
_OPEN_CHUNK = 100
# An open-grants cursor is the last expiry row read: `<end time key>|<grant id>`.
_EXPIRY_ROW = re.compile(r"^\d{8}T\d{6}\.\d{6}Z\|[0-9a-f]{32}-\d{3}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_for_ticket(ticket_id: str) -> str:
    """A resend of the same ticket maps to the same request, so it cannot create a second one.
    Ticket ids are opaque and case-sensitive (`RT-1` and `rt-1` are two tickets): hashed exactly as
    given, not folded or trimmed as resource-id keys are."""
    return hashlib.sha256(f"ticket|{ticket_id}".encode()).hexdigest()[:32]


def grant_id(request_id: str, index: int) -> str:
    return f"{request_id}-{index:03d}"


def is_request_id(text: str) -> bool:
    return bool(_REQUEST_ID.match(text))


def is_requester_cursor(text: str) -> bool:
    """Is `text` a page cursor of `list_for_requester` (the last row key of a page)?"""
    return bool(_REQUESTER_ROW.match(text))


def is_open_cursor(text: str) -> bool:
    """Is `text` a page cursor of `open_grants` (an expiry index row key)?"""
    return bool(_EXPIRY_ROW.match(text))


def requester_row_key(record: RequestRecord) -> str:
    return f"{inverted_time_key(record.start_time)}|{record.request_id}"


def active_until(record: RequestRecord, grants: Sequence[Grant]) -> datetime:
    """Until when the request may still be active: the latest end of its ports or, while its
    approval waits, its deadline (a pending port's end moves when it is approved)."""
    moments = [g.end_time for g in grants]
    if record.approval is not None and record.approval.waits_until is not None:
        moments.append(record.approval.waits_until)
    return max(moments)


@dataclass(frozen=True)
class RequestRecord:
    """The request as a whole: who asked, under which policy, when and why."""

    request_id: str
    policy: PolicyRef
    requester: Principal
    start_time: datetime
    justification: str | None
    ticket_id: str | None
    # Identifies the request's content, to tell a resend of a ticket from a reuse of its id.
    fingerprint: str
    # The caller's address as the platform reported it (None for queued requests).
    caller_address: str | None = None
    # Approvals (shared/approval.py): None when the request needed none.
    approval: Approval | None = None
    etag: str | None = None  # the header row's concurrency token (approval decisions are ETag-guarded)


@dataclass(frozen=True)
class StoredRequest:
    record: RequestRecord
    grants: list[Grant]


class RequestPage(NamedTuple):
    """One page of a person's requests, newest first; `cursor` continues it (None: the last page)."""

    requests: list[StoredRequest]
    cursor: str | None


class GrantPage(NamedTuple):
    """One page of grants, and where the next page starts (None: this was the last)."""

    grants: list[Grant]
    cursor: str | None


def take_page(
    rows: Iterable[tuple[str, Grant | None]],
    keep: Callable[[Grant], bool],
    *,
    limit: int = OPEN_PAGE_SIZE,
    scan_limit: int = OPEN_SCAN_LIMIT,
) -> GrantPage:
    """Up to `limit` grants that `keep` accepts from index rows `(row key, grant or None)` in key
    order, reading at most `scan_limit` rows. The cursor is the last row read, given only when a row
    is left after it, so a page may be short (even empty) and still say more follows. Pure."""
    found: list[Grant] = []
    last: str | None = None
    for scanned, (key, grant) in enumerate(rows):
        if len(found) >= limit or scanned >= scan_limit:
            return GrantPage(found, last)
        last = key
        if grant is not None and keep(grant):
            found.append(grant)
    return GrantPage(found, None)


class ReviewRow(NamedTuple):
    """A row of the review index: a break-glass request not reviewed yet, and who may review it."""

    request_id: str
    approvers: tuple[str, ...]


class WaitingRow(NamedTuple):
    """A row of the `approvals` index: a request something waits on, whom it waits for, until when."""

    request_id: str
    approvers: tuple[str, ...]
    waits_until: datetime | None


class RequestExistsError(RuntimeError):
    """A request with this id is already recorded (a resend of the same ticket, or a reuse of it)."""

    def __init__(self, existing: StoredRequest) -> None:
        super().__init__(f"request {existing.record.request_id} already exists")
        self.existing = existing


class TableGrantStore:
    """model.GrantStore on Table storage, plus what intake needs (create, history, per-VM reads)."""

    def __init__(self, settings: Settings) -> None:
        self._grants = table("grants", settings)
        self._by_vm = table("grantsbyvm", settings)
        self._by_target = table("grantsbytarget", settings)
        self._expiry = table("grantexpiry", settings)
        self._history = table("policyrequests", settings)
        self._waiting = table("approvals", settings)
        self._by_requester = table("requestsbyrequester", settings)

    # ---- intake ----

    def create_request(self, record: RequestRecord, grants: Sequence[Grant]) -> None:
        """Record a request and its grants atomically; raises RequestExistsError if the id is taken."""
        if not 0 < len(grants) <= MAX_GRANTS_PER_REQUEST:
            raise ValueError(f"a request holds 1-{MAX_GRANTS_PER_REQUEST} grants, not {len(grants)}")
        if record.ticket_id is not None:
            # A ticket's request id is deterministic, so a resend is expected: find it before touching
            # the indexes. A fresh random id cannot exist; the transaction below still refuses a reuse.
            existing = self.get_request(record.request_id)
            if existing is not None:
                raise RequestExistsError(existing)
        for grant in grants:
            self._by_vm.upsert_entity(_vm_index_entity(grant))
            self._expiry.upsert_entity(_expiry_entity(grant))
        if record.approval is not None and record.approval.waiting:
            self._waiting.upsert_entity(_waiting_entity(record.request_id, record.approval))
        if record.approval is not None and record.approval.needs_review:
            self._waiting.upsert_entity(_review_entity(record.request_id, record.approval))
        self._by_requester.upsert_entity(_requester_entity(record, active_until(record, grants)))
        self._history.upsert_entity(
            {
                "PartitionKey": hashed_key(record.policy.key),
                "RowKey": f"{inverted_time_key(record.start_time)}|{record.request_id}",
                "RequestId": record.request_id,
                "PolicyId": record.policy.id,
            }
        )
        operations: list[tuple[str, dict[str, Any]]] = [("create", _request_entity(record))]
        operations += [("create", _grant_entity(grant)) for grant in grants]
        try:
            self._grants.submit_transaction(operations)
        except TableTransactionError:
            # Another delivery of the same ticket won the race; anything else is re-raised.
            raced = self.get_request(record.request_id)
            if raced is None:
                raise
            raise RequestExistsError(raced) from None

    def get_request(self, request_id: str) -> StoredRequest | None:
        """The request and its grants, in request order: one partition query."""
        if not is_request_id(request_id):
            return None
        record: RequestRecord | None = None
        grants: list[Grant] = []
        for entity in self._grants.query_entities(f"PartitionKey eq {odata_quote(request_id)}"):
            if entity["RowKey"] == REQUEST_ROW:
                record = _request_from_entity(entity)
            else:
                grants.append(_grant_from_entity(entity))
        if record is None:
            return None
        return StoredRequest(record, sorted(grants, key=lambda g: g.grant_id))

    def get_approval(self, request_id: str, **options: Any) -> Approval | None:
        """The request's approval state alone (one point read of its header row, one column): None
        when it needed none or the row is missing. `options` are azure-core's per-call settings
        (`retry_total`, `read_timeout`), for a caller that must not wait long (notifications)."""
        if not is_request_id(request_id):
            return None
        try:
            entity = self._grants.get_entity(request_id, REQUEST_ROW, select=["Approval"], **options)
        except ResourceNotFoundError:
            return None
        text = entity.get("Approval")
        return approval_from_json(text) if text else None

    def update_request(self, record: RequestRecord) -> RequestRecord:
        """Write the request row (its approval state) if its etag still matches; raises
        ConcurrentUpdateError otherwise. A request that waits is indexed before the write."""
        if record.etag is None:
            raise ValueError("update_request() needs the request as read (with its etag)")
        if record.approval is not None and record.approval.waiting:
            self._waiting.upsert_entity(_waiting_entity(record.request_id, record.approval))
        metadata = _replace_as_read(
            self._grants, _request_entity(record), record.etag, f"request {record.request_id}"
        )
        # A row that no longer waits stays indexed until its grants follow (`forget_waiting`), so the
        # lapse timer finishes the job if this process dies in between.
        if record.approval is not None and record.approval.break_glass and not record.approval.needs_review:
            self.forget_review(record.request_id)  # after the write: the review is on the record now
        return replace(record, etag=str(metadata["etag"]))

    def reviews_awaited(self) -> list[ReviewRow]:
        """Break-glass requests not reviewed yet: one partition query. Readers re-check the request
        (the row is written before it, and removed only after its review is)."""
        rows = self._waiting.query_entities(
            f"PartitionKey eq {odata_quote(_REVIEW_PARTITION)}", select=["RowKey", "Approvers"]
        )
        return [ReviewRow(str(row["RowKey"]), tuple(json.loads(row["Approvers"]))) for row in rows]

    def forget_review(self, request_id: str) -> None:
        """Drop the request's review row (callers know its record no longer needs review)."""
        self._delete(self._waiting, _REVIEW_PARTITION, request_id)

    def list_for_requester(
        self,
        object_id: str,
        *,
        active_at: datetime | None = None,
        after: str | None = None,
        limit: int = REQUESTER_PAGE_SIZE,
    ) -> RequestPage:
        """A person's requests, newest first, at most `limit`, from after the cursor `after`. With
        `active_at`, only rows whose `ActiveUntil` is not before it (a hint: callers decide from the
        grants themselves). Reads one range of one partition, then each request found."""
        query = "PartitionKey eq @person"
        parameters: dict[str, Any] = {"person": _requester_key(object_id)}
        if after is not None:
            query += " and RowKey gt @after"
            parameters["after"] = after
        if active_at is not None:
            query += " and ActiveUntil ge @now"
            parameters["now"] = active_at.astimezone(UTC)
        # One row beyond the page says whether another page follows, without a request of its own.
        rows = self._by_requester.query_entities(
            query, parameters=parameters, select=["RowKey", "RequestId"], results_per_page=limit + 1
        )
        keys: list[tuple[str, str]] = []
        for row in rows:
            keys.append((str(row["RowKey"]), str(row["RequestId"])))
            if len(keys) > limit:
                break
        more = len(keys) > limit
        keys = keys[:limit]
        found: list[StoredRequest] = []
        # Two deliveries of one ticket racing may each index it (with their own start): listed once.
        for request_id in dict.fromkeys(request_id for _, request_id in keys):
            stored = self.get_request(request_id)
            # The index is a hint: the record says whose request it is.
            if stored is not None and same_object_id(stored.record.requester.object_id, object_id):
                found.append(stored)
        return RequestPage(found, keys[-1][0] if more else None)

    def waiting_requests(self) -> list[WaitingRow]:
        """Every request with something for an approver to decide: one partition query. Stale rows
        are possible, and so is a row whose request is not written yet (the index goes first):
        readers re-check the request."""
        rows = self._waiting.query_entities(
            f"PartitionKey eq {odata_quote(_WAITING_PARTITION)}", select=["RowKey", "Approvers", "WaitsUntil"]
        )
        return [
            WaitingRow(
                str(row["RowKey"]),
                tuple(json.loads(row["Approvers"])),
                _utc(row["WaitsUntil"]) if row.get("WaitsUntil") else None,
            )
            for row in rows
        ]

    def forget_waiting(self, request_id: str, decided: frozenset[str] | None = None) -> None:
        """Drop the request's index row. With `decided`: only if the row waits for one of those (an
        ETag-guarded delete), so a row just written for something new (an extension whose request
        row is still on its way) is kept. Without: whatever it is (the request does not exist)."""
        try:
            row = self._waiting.get_entity(_WAITING_PARTITION, request_id)
        except ResourceNotFoundError:
            return
        if decided is not None and str(row.get("WaitsFor") or "request") not in decided:
            return
        # Rewritten since it was read (it waits for something new), or gone: either way, done.
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            self._waiting.delete_entity(
                _WAITING_PARTITION,
                request_id,
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )

    def policy_history(self, policy: PolicyRef, limit: int = POLICY_HISTORY_LIMIT) -> list[StoredRequest]:
        """The newest `limit` requests under `policy`, oldest first (as Defender lists them)."""
        found: list[StoredRequest] = []
        rows = self._history.query_entities(
            f"PartitionKey eq {odata_quote(hashed_key(policy.key))}", select=["RequestId"]
        )
        for row in rows:
            stored = self.get_request(str(row["RequestId"]))
            if stored is not None:
                found.append(stored)
            if len(found) >= limit:
                break
        return list(reversed(found))

    def list_for_vm(self, vm: VmRef, *, open_only: bool, port: int | None = None) -> list[Grant]:
        """Grants on `vm` (on `port` if given); with open_only, those not revoked (callers check the
        end time). The index rows carry the port, so other ports' grants are not read."""
        query = f"PartitionKey eq {odata_quote(hashed_key(vm.key))}"
        if open_only:
            query += " and Revoked eq false"
        if port is not None:
            query += f" and Port eq {int(port)}"
        grants = []
        for row in self._by_vm.query_entities(query, select=["RowKey"]):
            grant = self.get(str(row["RowKey"]))
            if grant is not None and not (open_only and grant.status is PortStatus.REVOKED):
                grants.append(grant)
        return grants

    # ---- model.GrantStore ----

    def get(self, grant_id: str) -> Grant | None:
        match = _GRANT_ID.match(grant_id)
        if not match:
            return None
        try:
            entity = self._grants.get_entity(match["request"], grant_id)
        except ResourceNotFoundError:
            return None
        return _grant_from_entity(entity)

    def _get_many(self, grant_ids: Iterable[str]) -> list[Grant]:
        """The grants that exist among `grant_ids`, in that order. A request's grants share its
        partition, so two or more of one request are fetched with one partition query instead of a
        point read each (a filter across partitions would make Table storage scan)."""
        by_request: dict[str, list[str]] = {}
        for grant_id in grant_ids:
            match = _GRANT_ID.match(grant_id)
            if match:
                by_request.setdefault(match["request"], []).append(grant_id)
        found: dict[str, Grant] = {}
        for request_id, wanted in by_request.items():
            if len(wanted) == 1:
                grant = self.get(wanted[0])
                if grant is not None:
                    found[grant.grant_id] = grant
                continue
            query = f"PartitionKey eq {odata_quote(request_id)} and RowKey ne {odata_quote(REQUEST_ROW)}"
            for entity in self._grants.query_entities(query):
                if entity["RowKey"] in wanted:
                    found[entity["RowKey"]] = _grant_from_entity(entity)
        ordered = dict.fromkeys(grant_ids)
        return [found[grant_id] for grant_id in ordered if grant_id in found]

    def list_for_request(self, request_id: str) -> list[Grant]:
        stored = self.get_request(request_id)
        return stored.grants if stored is not None else []

    def list_for_target(self, target: TargetRef, *, include_closed: bool = False) -> list[Grant]:
        query = f"PartitionKey eq {odata_quote(hashed_key(target.key))}"
        if not include_closed:
            query += " and Settled eq false"
        grant_ids = [str(row["RowKey"]) for row in self._by_target.query_entities(query, select=["RowKey"])]
        grants = []
        for grant in self._get_many(grant_ids):
            if target.key not in grant.targets:
                continue
            settled = grant.status is PortStatus.REVOKED and grant.targets[target.key] is TargetState.REMOVED
            if include_closed or not settled:
                grants.append(grant)
        return grants

    def list_unsettled(self) -> list[Grant]:
        """Every grant not yet settled (open, or revoked with a rule not confirmed gone): one paged
        query of the grants table, whatever the number of targets. Rows written before `Settled`
        existed lack it and are not found here; the sweep and the by-target index still find them."""
        query = "Settled eq false"
        return [_grant_from_entity(entity) for entity in self._grants.query_entities(query)]

    def list_ending_before(self, moment: datetime) -> list[Grant]:
        query = (
            f"PartitionKey eq {odata_quote(_EXPIRY_PARTITION)} and RowKey lt {odata_quote(time_key(moment))}"
        )
        grants = []
        for row in self._expiry.query_entities(query, select=["PartitionKey", "RowKey", "GrantId"]):
            grant = self.get(str(row["GrantId"]))
            if grant is None:
                # Written ahead of a request that is not (yet) recorded: leave it for its writer.
                continue
            if grant.status is PortStatus.REVOKED:
                self._delete(self._expiry, row["PartitionKey"], row["RowKey"])
                continue
            if grant.end_time < moment:
                grants.append(grant)
        return grants

    def open_grants(self, now: datetime, *, after: str | None = None) -> Iterator[tuple[str, Grant | None]]:
        """`(row key, grant)` for every unrevoked grant ending after `now` (or after the cursor
        `after`), soonest end first: one range of the expiry index, which holds only unrevoked grants,
        so closed grants of all time are never read. Grants are fetched a chunk of rows at a time; a
        row whose grant is not (yet) written yields None. Callers judge each grant (the index is a
        hint) and stop reading when their page is full."""
        start = time_key(now)
        if after is not None and after > start:
            start = after
        rows = self._expiry.query_entities(
            "PartitionKey eq @due and RowKey gt @start",
            parameters={"due": _EXPIRY_PARTITION, "start": start},
            select=["RowKey", "GrantId"],
            results_per_page=_OPEN_CHUNK,
        )
        chunk: list[tuple[str, str]] = []
        for row in rows:
            chunk.append((str(row["RowKey"]), str(row["GrantId"])))
            if len(chunk) >= _OPEN_CHUNK:
                yield from self._with_grants(chunk)
                chunk = []
        yield from self._with_grants(chunk)

    def _with_grants(self, rows: Sequence[tuple[str, str]]) -> Iterator[tuple[str, Grant | None]]:
        found = {grant.grant_id: grant for grant in self._get_many([grant_id for _, grant_id in rows])}
        for key, grant_id in rows:
            yield key, found.get(grant_id)

    def unsettled_work(self) -> tuple[set[str], list[Grant]]:
        """Two paged index scans instead of a read per open grant: the unsettled rows of the target
        index name the targets; an unrevoked grant (expiry index) with no such row has no targets
        yet, and only those grants are read."""
        target_keys: set[str] = set()
        with_targets: set[str] = set()
        for row in self._by_target.query_entities("Settled eq false", select=["RowKey", "Target"]):
            target_keys.add(str(row["Target"]))
            with_targets.add(str(row["RowKey"]))
        pathless = []
        query = f"PartitionKey eq {odata_quote(_EXPIRY_PARTITION)}"
        for row in self._expiry.query_entities(query, select=["GrantId"]):
            grant_id = str(row["GrantId"])
            if grant_id in with_targets:
                continue
            grant = self.get(grant_id)
            if grant is not None and grant.status is not PortStatus.REVOKED and not grant.targets:
                pathless.append(grant)
        return target_keys, pathless

    def update(self, grant: Grant) -> Grant:
        if grant.etag is None:
            raise ValueError("update() needs the grant as read (with its etag)")
        current = self.get(grant.grant_id)
        if current is None:
            raise ConcurrentUpdateError(f"grant {grant.grant_id} does not exist")
        if current.etag != grant.etag:
            raise ConcurrentUpdateError(f"grant {grant.grant_id} changed since it was read")
        # Before the write: index whatever the new version must be found by.
        for key, state in grant.targets.items():
            previous = current.targets.get(key)
            if previous is None or (previous is TargetState.REMOVED and state is not TargetState.REMOVED):
                self._by_target.upsert_entity(_target_index_entity(grant, key, settled=False))
        if current.end_time != grant.end_time and grant.status is not PortStatus.REVOKED:
            self._expiry.upsert_entity(_expiry_entity(grant))
        if grant.end_time > current.end_time and grant.status is not PortStatus.REVOKED:
            self._extend_requester_row(grant)
        metadata = _replace_as_read(self._grants, _grant_entity(grant), grant.etag, f"grant {grant.grant_id}")
        written = replace(grant, etag=str(metadata["etag"]))
        # After the write: drop what the new version no longer needs.
        was_closed = current.status is PortStatus.REVOKED
        for key, state in grant.targets.items():
            settled_now = grant.status is PortStatus.REVOKED and state is TargetState.REMOVED
            settled_before = was_closed and current.targets.get(key) is TargetState.REMOVED
            if settled_now and not settled_before:
                # Settled here: the row goes, so this target's converges never read its history.
                self._delete(self._by_target, hashed_key(key), grant.grant_id)
        for key in set(current.targets) - set(grant.targets):
            self._delete(self._by_target, hashed_key(key), grant.grant_id)
        if grant.status is PortStatus.REVOKED and not was_closed:
            self._by_vm.upsert_entity(_vm_index_entity(grant))
            self._delete(self._expiry, _EXPIRY_PARTITION, _expiry_row(grant))
        if current.end_time != grant.end_time:
            self._delete(self._expiry, _EXPIRY_PARTITION, _expiry_row(current))
        return written

    def _extend_requester_row(self, grant: Grant) -> None:
        """Move the request's `ActiveUntil` later to the grant's new end (never earlier), before the
        grant is written: a reader filtering on it never misses the request while the port is open."""
        try:  # the header row alone: the request's grants are not needed here
            record = _request_from_entity(self._grants.get_entity(grant.request_id, REQUEST_ROW))
        except ResourceNotFoundError:
            return
        key = _requester_key(record.requester.object_id)
        try:
            row = self._by_requester.get_entity(key, requester_row_key(record))
            until = _utc(row["ActiveUntil"])
        except (ResourceNotFoundError, KeyError):
            until = None  # written before this index existed: add it now
        if until is None or grant.end_time > until:
            self._by_requester.upsert_entity(_requester_entity(record, grant.end_time))

    @staticmethod
    def _delete(client: TableClient, partition: str, row: str) -> None:
        client.delete_entity(partition, row)  # deleting a missing entity is not an error here


# ---- entities ----


def _vm_index_entity(grant: Grant) -> dict[str, Any]:
    return {
        "PartitionKey": hashed_key(grant.vm.key),
        "RowKey": grant.grant_id,
        "VmId": grant.vm.id,
        "Port": grant.port,
        "EndTime": grant.end_time,
        "Revoked": grant.status is PortStatus.REVOKED,
    }


def _waiting_entity(request_id: str, approval: Approval) -> dict[str, Any]:
    return {
        "PartitionKey": _WAITING_PARTITION,
        "RowKey": request_id,
        "Approvers": json.dumps(list(approval.approvers)),
        "WaitsUntil": approval.waits_until,
        "WaitsFor": approval.waits_for or "",
    }


def _review_entity(request_id: str, approval: Approval) -> dict[str, Any]:
    return {
        "PartitionKey": _REVIEW_PARTITION,
        "RowKey": request_id,
        "Approvers": json.dumps(list(approval.approvers)),
    }


def same_object_id(left: str, right: str) -> bool:
    return _requester_key(left) == _requester_key(right)


def _requester_key(object_id: str) -> str:
    """Object ids are GUIDs (checked at sign-in and queue intake): a key as they are, lower-cased."""
    return object_id.strip().lower()


def _requester_entity(record: RequestRecord, until: datetime) -> dict[str, Any]:
    return {
        "PartitionKey": _requester_key(record.requester.object_id),
        "RowKey": requester_row_key(record),
        "RequestId": record.request_id,
        "ActiveUntil": until,
    }


def _expiry_row(grant: Grant) -> str:
    return f"{time_key(grant.end_time)}|{grant.grant_id}"


def _expiry_entity(grant: Grant) -> dict[str, Any]:
    return {
        "PartitionKey": _EXPIRY_PARTITION,
        "RowKey": _expiry_row(grant),
        "GrantId": grant.grant_id,
        "EndTime": grant.end_time,
    }


def _target_index_entity(grant: Grant, target_key: str, *, settled: bool) -> dict[str, Any]:
    return {
        "PartitionKey": hashed_key(target_key),
        "RowKey": grant.grant_id,
        "Target": target_key,
        "EndTime": grant.end_time,
        "Settled": settled,
    }


def _principal_fields(principal: Principal) -> dict[str, Any]:
    return {
        "RequesterId": principal.object_id,
        "RequesterName": principal.display_name,
        "RequesterSource": principal.source.value,
        "RequesterTenant": principal.tenant_id or "",
    }


def _principal_from(entity: Mapping[str, Any]) -> Principal:
    return Principal(
        object_id=entity["RequesterId"],
        display_name=entity.get("RequesterName", ""),
        source=PrincipalSource(entity["RequesterSource"]),
        tenant_id=entity.get("RequesterTenant") or None,
    )


def _policy_fields(policy: PolicyRef) -> dict[str, Any]:
    return {
        "PolicyId": policy.id,
        "PolicySubscription": policy.subscription_id,
        "PolicyResourceGroup": policy.resource_group,
        "PolicyLocation": policy.location,
        "PolicyName": policy.name,
    }


def _policy_from(entity: Mapping[str, Any]) -> PolicyRef:
    return PolicyRef(
        entity["PolicySubscription"],
        entity["PolicyResourceGroup"],
        entity["PolicyLocation"],
        entity["PolicyName"],
    )


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _request_entity(record: RequestRecord) -> dict[str, Any]:
    return {
        "PartitionKey": record.request_id,
        "RowKey": REQUEST_ROW,
        **_policy_fields(record.policy),
        **_principal_fields(record.requester),
        "StartTime": record.start_time,
        "Justification": record.justification or "",
        "TicketId": record.ticket_id or "",
        "Fingerprint": record.fingerprint,
        "CallerAddress": record.caller_address or "",
        "Approval": approval_json(record.approval) if record.approval is not None else "",
    }


def _request_from_entity(entity: Mapping[str, Any]) -> RequestRecord:
    return RequestRecord(
        request_id=entity["PartitionKey"],
        policy=_policy_from(entity),
        requester=_principal_from(entity),
        start_time=_utc(entity["StartTime"]),
        justification=entity.get("Justification") or None,
        ticket_id=entity.get("TicketId") or None,
        fingerprint=entity.get("Fingerprint", ""),
        caller_address=entity.get("CallerAddress") or None,
        approval=approval_from_json(entity["Approval"]) if entity.get("Approval") else None,
        etag=str(entity.metadata["etag"]) if hasattr(entity, "metadata") else None,
    )


def _grant_entity(grant: Grant) -> dict[str, Any]:
    return {
        "PartitionKey": grant.request_id,
        "RowKey": grant.grant_id,
        **_policy_fields(grant.policy),
        "VmId": grant.vm.id,
        "Port": grant.port,
        "Protocol": grant.protocol.value,
        "SourcePrefixes": json.dumps(list(grant.source_prefixes)),
        "StartTime": grant.start_time,
        "EndTime": grant.end_time,
        **_principal_fields(grant.requester),
        "Justification": grant.justification or "",
        "TicketId": grant.ticket_id or "",
        "Status": grant.status.value,
        "StatusReason": grant.status_reason.value if grant.status_reason else "",
        "Targets": json.dumps({key: state.value for key, state in sorted(grant.targets.items())}),
        "MappedPort": grant.mapped_port if grant.mapped_port is not None else -1,
        "ConnectAddress": grant.connect_address or "",
        "NotBefore": grant.not_before if grant.not_before is not None else "",
        "Settled": is_settled(grant),
    }


def is_settled(grant: Grant) -> bool:
    """Nothing left to do: revoked, and confirmed removed from every target it touched."""
    return grant.status is PortStatus.REVOKED and all(
        state is TargetState.REMOVED for state in grant.targets.values()
    )


def _grant_from_entity(entity: Any) -> Grant:
    mapped_port = int(entity.get("MappedPort", -1))
    return Grant(
        grant_id=entity["RowKey"],
        request_id=entity["PartitionKey"],
        policy=_policy_from(entity),
        vm=VmRef.parse(entity["VmId"]),
        port=int(entity["Port"]),
        protocol=TransportProtocol(entity["Protocol"]),
        source_prefixes=tuple(json.loads(entity["SourcePrefixes"])),
        start_time=_utc(entity["StartTime"]),
        end_time=_utc(entity["EndTime"]),
        requester=_principal_from(entity),
        justification=entity.get("Justification") or None,
        ticket_id=entity.get("TicketId") or None,
        status=PortStatus(entity["Status"]),
        status_reason=StatusReason(entity["StatusReason"]) if entity.get("StatusReason") else None,
        targets={key: TargetState(value) for key, value in json.loads(entity["Targets"]).items()},
        mapped_port=mapped_port if mapped_port >= 0 else None,
        connect_address=entity.get("ConnectAddress") or None,
        not_before=_utc(entity["NotBefore"]) if entity.get("NotBefore") else None,
        etag=str(entity.metadata["etag"]),
    )


def _replace_as_read(table: TableClient, entity: dict[str, Any], etag: str, what: str) -> Mapping[str, Any]:
    """Replace a row only if it is still as read (its ETag): another writer's change is never lost,
    it surfaces as ConcurrentUpdateError for the caller's `retry_on_conflict`."""
    try:
        return table.update_entity(
            entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    except (ResourceModifiedError, ResourceNotFoundError) as error:
        raise ConcurrentUpdateError(f"{what} changed since it was read") from error
