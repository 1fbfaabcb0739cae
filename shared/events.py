"""Every audit and log event name the app emits, in one catalogue (jit-access keeps one `EventIds`).

The values are contracts, not labels: audit rows store them (`Event` in the `audit` tables), saved
queries and alert rules match on them (`infra/modules/app.bicep` pages on `revoke.failing`), so a
value never changes; a new event is a new member. `log_event` and `AuditTrail.record` take an
`EventId`, so mypy refuses a name that is not here, and `tests/unit/test_events.py` refuses a string
literal at a call site and an alert in `infra/` naming an event that is not here.
"""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class EventId(StrEnum):
    # Requests (shared/actions/initiate.py, shared/queue_intake.py): audit rows.
    REQUEST_ACCEPTING = "request.accepting"
    REQUEST_ACCEPTED = "request.accepted"
    REQUEST_REFUSED = "request.refused"
    REQUEST_RESENT = "request.resent"
    # Requests: log lines.
    REQUEST_AUDIT_DEFERRED = "request.audit_deferred"
    REQUEST_HANDOVER_FAILED = "request.handover_failed"
    QUEUE_REQUEST_REFUSED = "queue.request_refused"
    QUEUE_MESSAGE_POISONED = "queue.message_poisoned"
    # Approvals (branch `approvals`): audit rows. Values fixed by issue 13; notifications map them.
    REQUEST_PENDING = "request.pending"
    REQUEST_APPROVED = "request.approved"
    REQUEST_DENIED = "request.denied"
    REQUEST_LAPSED = "request.lapsed"
    REQUEST_BREAK_GLASS = "request.break_glass"
    REQUEST_REVIEWED = "request.reviewed"
    APPROVAL_REFUSED = "approval.refused"
    """An approve, deny, extend or review that was refused (who, which, why): audit row, no event."""

    # Grants (shared/actions/, shared/enforcement/transitions.py): audit rows.
    GRANT_INITIATING = "grant.initiating"
    GRANT_INITIATED = "grant.initiated"
    GRANT_PATH_RESOLVED = "grant.path_resolved"
    GRANT_PATH_UNRESOLVED = "grant.path_unresolved"
    GRANT_PORT_MAPPED = "grant.port_mapped"
    GRANT_PENDING = "grant.pending"
    GRANT_APPLIED = "grant.applied"
    GRANT_REFUSED = "grant.refused"
    GRANT_REMOVED = "grant.removed"
    GRANT_REVOKING = "grant.revoking"
    GRANT_REVOKED = "grant.revoked"
    GRANT_EXPIRED = "grant.expired"
    GRANT_CLOSED = "grant.closed"
    GRANT_EXTENDED = "grant.extended"
    GRANT_EXPIRING = "grant.expiring"
    """An open grant ends within 10 minutes (shared/notify/expiring.py); once per grant."""
    REVOKE_REFUSED = "revoke.refused"
    # Grants: log lines.
    GRANT_REVOKE_FOLLOWUP_FAILED = "grant.revoke_followup_failed"
    REVOKE_STORAGE_FAILED = "revoke.storage_failed"
    REVOKE_FAILING = "revoke.failing"
    """A revoke (closing a rule whose grant has ended) keeps failing; ERROR; the alert in infra/ pages."""

    # Policies (shared/actions/policies.py, importer.py): audit rows.
    POLICY_WRITTEN = "policy.written"
    POLICY_REFUSED = "policy.refused"
    POLICY_DELETED = "policy.deleted"
    POLICY_IMPORTED = "policy.imported"
    POLICY_IMPORT_REFUSED = "policy.import_refused"
    POLICY_IMPORT_FINISHED = "policy.import_finished"
    # Policies: log lines.
    POLICY_CONVERGE_DEFERRED = "policy.converge_deferred"
    IMPORT_DEFENDER_UNREADABLE = "import.defender_unreadable"
    IMPORT_UNRECOGNISED_ID = "import.unrecognised_id"

    # Enforcement (shared/enforcement/): audit rows.
    TARGET_CONVERGED = "target.converged"
    TARGET_WRITE_FAILED = "target.write_failed"
    DRIFT_REPAIRED = "drift.repaired"
    DRIFT_IAC_CONFLICT = "drift.iac_conflict"  # also a WARNING log line
    DRIFT_REMOVED_UNKNOWN = "drift.removed_unknown"
    # Enforcement: log lines.
    CONVERGE_LEASE_BUSY = "converge.lease_busy"
    CONVERGE_ARM_REFUSED = "converge.arm_refused"
    CONVERGE_WRITE_FAILED = "converge.write_failed"
    CONVERGE_PERMANENT_FAILURE = "converge.permanent_failure"
    CONVERGE_GRANT_UNKNOWN = "converge.grant_unknown"
    CONVERGE_GRANT_FAILED = "converge.grant_failed"
    CONVERGE_PATH_UNRESOLVED = "converge.path_unresolved"
    CONVERGE_MESSAGE_INVALID = "converge.message_invalid"
    CONVERGE_PLAN_FAILED = "converge.plan_failed"
    CONVERGE_TARGET_FAILED = "converge.target_failed"
    RECONCILE_PLANNED = "reconcile.planned"
    RECONCILE_UNPLANNABLE = "reconcile.unplannable"
    SNAPSHOT_RULE_GROUPS_UNLISTED = "snapshot.rule_groups_unlisted"
    SNAPSHOT_SUBSCRIPTION_UNLISTED = "snapshot.subscription_unlisted"
    TOPOLOGY_UNRESOLVED = "topology.unresolved"

    # Notifications (shared/notify/): audit rows.
    NOTIFY_DELIVERY_POISONED = "notify.delivery_poisoned"
    """A channel kept refusing an event, or our storage failed on the host's every try (`cause:
    storage`); the message went to the poison queue (who, what, why)."""
    # Notifications: log lines.
    NOTIFY_ENQUEUE_FAILED = "notify.enqueue_failed"
    NOTIFY_APPROVERS_UNREAD = "notify.approvers_unread"
    """A grant event's request row could not be read for its approvers: published with none."""
    NOTIFY_DELIVERED = "notify.delivered"
    NOTIFY_DELIVERY_FAILED = "notify.delivery_failed"
    NOTIFY_MESSAGE_INVALID = "notify.message_invalid"
    NOTIFY_CHANNEL_UNKNOWN = "notify.channel_unknown"
    # The host poisons an event message after storage failed on every try, and the audit failed too.
    NOTIFY_POISON_UNAUDITED = "notify.poison_unaudited"

    # Plumbing: log lines.
    AUDIT_RECORDED = "audit.recorded"
    AUDIT_ROW_EXISTED = "audit.row_existed"  # a retried create found its own row: already written
    API_STORAGE_UNAVAILABLE = "api.storage_unavailable"
    TELEMETRY_CONFIGURED = "telemetry.configured"
    TELEMETRY_FAILED = "telemetry.failed"
