"""Domain values shared by requests (intake, policy, grants) and enforcement (plan, converge).

Pure: no Azure SDK, no storage. Resource ids and names are compared case-insensitively the way ARM
compares them (`arm_key`); `key` properties give that normalised form, used in tables, dictionaries
and caches.

Vocabulary on the wire stays Defender's: a port of a request is `Initiating` until its rules exist
on every target on its path, then `Initiated`, then `Revoked` with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from shared.events import EventId

T = TypeVar("T")

# ---- names compared the way ARM compares them ----

# .NET's ordinal ignore-case casing table maps these two to themselves, although Unicode's simple
# upper-case mapping sends them to ASCII 'I' and 'S' (dotnet/runtime,
# src/native/libs/System.Globalization.Native/pal_casing.c, GlobalizationNative_InitOrdinalCasingPage:
# "Disable Turkish I behavior on Ordinal operations", pTarget[0x31] = 0x0131 and 0x7F = 0x017F).
_ORDINAL_CASING_KEEPS = frozenset({"\u0131", "\u017f"})


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    if char in _ORDINAL_CASING_KEEPS:
        return char
    upper = char.upper()
    if len(upper) == 1:
        return upper
    # Python's upper() is the *full* mapping (ß -> SS); .NET uses the simple one, one character to
    # one. Where the full mapping grows, the simple upper-case is the single-character title-case
    # (U+1F80 -> U+1F88) or, when there is none, the character itself (ß stays ß).
    title = char.title()
    return title if len(title) == 1 else char


def arm_key(name: str) -> str:
    """The form in which two ARM names or ids are equal exactly when ARM says they are the same.

    ARM compares names with .NET's `StringComparison.OrdinalIgnoreCase`: each UTF-16 unit (surrogate
    pairs as one character) mapped by the invariant *simple* upper-case mapping, then compared
    ordinally ([MS-UCODEREF] 3.1.5.5 "Comparing UTF-16 Strings Ordinally"; dotnet/runtime
    System/Globalization/OrdinalCasing.Icu.cs). So, unlike Python's `lower()` or `casefold()`:
    KELVIN SIGN U+212A is upper-case already and is not 'K'; 'ß' has no simple upper-case and is not
    'ss' (nor 'ẞ'); dotless i U+0131 and long s U+017F are kept as they are (not 'I', 'S'); dotted
    'İ' U+0130 is upper-case already and is not 'i'.

    The folded form is then ASCII-lower-cased: no character outside ASCII folds into ASCII (the two that
    would are the ones kept above), so this changes no equality, and the keys of ASCII names stay what
    `lower()` made them, which keeps stored keys valid. Differences between the Unicode versions of
    Python and of ARM's ICU are possible for characters assigned recently; names are short and Azure's
    naming rules allow few such characters.
    """
    if name.isascii():
        return name.lower()
    return "".join(char.lower() if (char := _fold_char(c)).isascii() else char for c in name)


def same_arm_name(a: str, b: str) -> bool:
    """Are `a` and `b` the same name (or id) to ARM?"""
    return arm_key(a) == arm_key(b)


class DomainError(ValueError):
    """Invalid input, with the field at fault; the API turns it into a 400 naming `field`."""

    def __init__(self, field_path: str, message: str, code: str = "InvalidRequest") -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.reason = message
        self.code = code


class TransportProtocol(StrEnum):
    """A JIT policy port's protocol, spelt as Defender spells it."""

    TCP = "TCP"
    UDP = "UDP"
    ANY = "*"


# Azure's naming rules, checked wherever an id enters (requests, policies, queries, the queue), so a
# name can never smuggle `?`, `#`, `%`, `/` or spaces into an ARM URL built from it.
# Subscription: a GUID. Resource group: 1-90 letters, digits, `_ - . ( )`, not ending in `.`.
# Virtual machine: 1-64 letters, digits, `_ - .`, starting with a letter or digit, not ending in `.`
# or `-`. Azure Firewall / Firewall Policy: 1-80 letters, digits, `_ - .`, starting with a letter or
# digit, ending with a letter, digit or `_`.
SUBSCRIPTION_PATTERN = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
RESOURCE_GROUP_PATTERN = r"[-\w.()]{0,89}[-\w()]"
VM_NAME_PATTERN = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,62}[A-Za-z0-9_])?"
FIREWALL_NAME_PATTERN = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,78}[A-Za-z0-9_])?"
# The fixed words of an id are case-insensitive, the names are not matched with IGNORECASE: under it
# Python's [A-Za-z] also matches KELVIN SIGN and three other non-ASCII letters.
_VM_ID = re.compile(
    rf"(?i:/subscriptions/)(?P<sub>{SUBSCRIPTION_PATTERN})(?i:/resourceGroups/)(?P<rg>{RESOURCE_GROUP_PATTERN})"
    rf"(?i:/providers/Microsoft\.Compute/virtualMachines/)(?P<name>{VM_NAME_PATTERN})"
)


@dataclass(frozen=True)
class ResourceId:
    """An ARM resource id, kept as given, compared case-insensitively."""

    value: str

    @property
    def key(self) -> str:
        return arm_key(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceId) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.value

    @property
    def name(self) -> str:
        return self.value.rstrip("/").rsplit("/", 1)[-1]

    @property
    def subscription_id(self) -> str:
        parts = self.value.split("/")
        return parts[2] if len(parts) > 2 and parts[1].lower() == "subscriptions" else ""


@dataclass(frozen=True)
class VmRef:
    """A virtual machine, by subscription, resource group and name."""

    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def parse(cls, vm_id: str, field_path: str = "id") -> VmRef:
        match = _VM_ID.fullmatch(vm_id.strip())
        if not match:
            raise DomainError(
                field_path,
                f"{vm_id[:300]!r} is not a virtual machine id "
                "(/subscriptions/{subscription GUID}/resourceGroups/{rg}/providers/Microsoft.Compute/"
                "virtualMachines/{name}, names as Azure allows them)",
            )
        return cls(match["sub"], match["rg"], match["name"])

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Compute/virtualMachines/{self.name}"
        )

    @property
    def key(self) -> str:
        return arm_key(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VmRef) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


# ---- policies (Defender's JIT policy JSON, as domain values) ----


@dataclass(frozen=True)
class PolicyPort:
    number: int
    protocol: TransportProtocol
    # "*" means any source; otherwise IPs / CIDRs, exactly as the policy lists them.
    allowed_source_prefixes: tuple[str, ...]
    max_request_access_duration: timedelta


@dataclass(frozen=True)
class FirewallRef:
    """The Azure Firewall in front of a VM (our extension; Defender only knows `publicIpAddress`)."""

    # Resource id of the Microsoft.Network/azureFirewalls; its Firewall Policy, if any, is read from it.
    firewall_id: ResourceId


@dataclass(frozen=True)
class ApprovalPolicy:
    """Our extension per VM (`portcullis.approval`): who must approve a request before it opens.

    `approvers` are Entra ID object ids of users or groups (lower-case); `required` distinct people
    among them must approve; a request not decided within `pending_timeout` lapses; `break_glass`
    lets a requester open at once with a stated reason, flagged for review."""

    approvers: tuple[str, ...]
    required: int = 1
    pending_timeout: timedelta = timedelta(hours=1)
    break_glass: bool = False


@dataclass(frozen=True)
class VmPolicy:
    vm: VmRef
    ports: tuple[PolicyPort, ...]
    # Defender's field: the public IP of the Azure Firewall that fronts this VM.
    public_ip_address: str | None = None
    # Our extension: an explicit firewall; wins over public_ip_address when both are given.
    firewall: FirewallRef | None = None
    # Our extension: requests need approval first (None: approved automatically, as Defender does).
    approval: ApprovalPolicy | None = None

    def port(self, number: int) -> PolicyPort | None:
        return next((p for p in self.ports if p.number == number), None)


@dataclass(frozen=True)
class PolicyRef:
    subscription_id: str
    resource_group: str
    location: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.Security/locations/{self.location}/jitNetworkAccessPolicies/{self.name}"
        )

    @property
    def key(self) -> str:
        return arm_key(self.id)


@dataclass(frozen=True)
class JitPolicy:
    ref: PolicyRef
    virtual_machines: tuple[VmPolicy, ...]
    kind: str = "Basic"

    def vm_policy(self, vm: VmRef) -> VmPolicy | None:
        return next((v for v in self.virtual_machines if v.vm == vm), None)


# ---- who is asking ----


class PrincipalSource(StrEnum):
    EASY_AUTH = "easy-auth"
    JWT = "jwt"
    QUEUE = "queue"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an Entra ID object id, plus the group ids its claims carry."""

    object_id: str
    display_name: str
    source: PrincipalSource
    tenant_id: str | None = None
    group_ids: frozenset[str] = frozenset()


# ---- grants: one per (request, VM, port) ----


class PortStatus(StrEnum):
    """Defender's per-port status; `Initiating` is what live Azure reports before the rules exist."""

    INITIATING = "Initiating"
    INITIATED = "Initiated"
    REVOKED = "Revoked"
    # Ours: waiting for approval (shared/approval.py); nothing opens while a grant is Pending.
    PENDING = "Pending"


class WirePortStatus(StrEnum):
    """A port's status as the API answers it: Defender's three, plus ours for approvals. A grant
    ended by a denial or by its approval lapsing is stored Revoked (every closing path of enforcement
    knows that one) and answered `Denied` / `Expired` (`wire_status`)."""

    INITIATING = "Initiating"
    INITIATED = "Initiated"
    REVOKED = "Revoked"
    PENDING = "Pending"
    DENIED = "Denied"
    EXPIRED = "Expired"


class StatusReason(StrEnum):
    EXPIRED = "Expired"
    USER_REQUESTED = "UserRequested"
    NEWER_REQUEST_INITIATED = "NewerRequestInitiated"
    # Ours (approvals): waiting, refused by an approver, or not decided in time.
    APPROVAL_REQUIRED = "Approval required"
    DENIED = "Denied"
    APPROVAL_TIMED_OUT = "ApprovalTimedOut"


class TargetKind(StrEnum):
    NSG = "nsg"
    FIREWALL_CLASSIC = "firewall-classic"
    FIREWALL_POLICY = "firewall-policy"


@dataclass(frozen=True)
class TargetRef:
    """A thing converge() writes as a whole: an NSG, a classic firewall, or a firewall policy.

    For FIREWALL_POLICY the id is the Firewall Policy's id; our rule collection group lives in it.
    """

    kind: TargetKind
    id: ResourceId

    @property
    def key(self) -> str:
        return f"{self.kind.value}|{self.id.key}"

    @classmethod
    def from_key(cls, key: str) -> TargetRef:
        kind, _, resource_id = key.partition("|")
        return cls(TargetKind(kind), ResourceId(resource_id))


class TargetState(StrEnum):
    """Where one target stands for one grant."""

    PENDING = "Pending"  # recorded; converge has not yet written the rule
    APPLIED = "Applied"  # the rule exists on the target (confirmed by a read or a successful write)
    REMOVED = "Removed"  # the grant ended and the rule is confirmed gone
    FAILED = "Failed"  # ARM keeps refusing; converge keeps trying and reports it


@dataclass(frozen=True)
class Grant:
    """One port on one VM for one request: the unit that is opened, superseded and closed."""

    grant_id: str
    request_id: str
    policy: PolicyRef
    vm: VmRef
    port: int
    protocol: TransportProtocol
    source_prefixes: tuple[str, ...]
    start_time: datetime
    end_time: datetime
    requester: Principal
    justification: str | None
    ticket_id: str | None
    status: PortStatus = PortStatus.INITIATING
    status_reason: StatusReason | None = None
    # Every NSG / firewall this grant needs a rule on, and how far each has got.
    targets: Mapping[str, TargetState] = field(default_factory=dict)
    # Behind a firewall: the port on the firewall's public IP that DNATs to the VM's port.
    mapped_port: int | None = None
    # Where the user connects: the firewall's or the VM's public IP (None until topology is known).
    connect_address: str | None = None
    etag: str | None = None  # the store's concurrency token for this record
    # Scheduled access (our `startTimeUtc`): nothing opens before this moment. None for a grant that
    # opens at once, so hosts whose clocks differ a little never hold back an ordinary grant.
    not_before: datetime | None = None

    def is_open_at(self, now: datetime) -> bool:
        """Should its rules exist at `now`? Not while pending approval or before its scheduled start,
        not once revoked or past its end time."""
        if self.status is PortStatus.REVOKED or self.status is PortStatus.PENDING:
            return False
        if self.not_before is not None and now < self.not_before:
            return False
        return now < self.end_time

    @property
    def connect_port(self) -> int:
        return self.mapped_port if self.mapped_port is not None else self.port


# ---- what enforcement needs from the records (implemented on Table storage in shared/grants.py) ----


class GrantStore(Protocol):
    def get(self, grant_id: str) -> Grant | None: ...

    def list_for_request(self, request_id: str) -> list[Grant]: ...

    def list_for_target(self, target: TargetRef, *, include_closed: bool = False) -> list[Grant]:
        """Grants that touch `target` whose rules should exist or are not yet confirmed removed."""
        ...

    def list_ending_before(self, moment: datetime) -> list[Grant]:
        """Grants not yet revoked whose end time is before `moment` (the expiry sweep)."""
        ...

    def list_unsettled(self) -> list[Grant]:
        """Every grant not yet revoked-and-removed everywhere, in one paged query (reconcile pass)."""
        ...

    def unsettled_work(self) -> tuple[set[str], list[Grant]]:
        """(keys of every target an unsettled grant touches, grants not yet revoked whose targets are
        not resolved yet): what the reconcile timer must look at beyond the policies' own targets."""
        ...

    def update(self, grant: Grant) -> Grant:
        """Write `grant` if its etag still matches; raises ConcurrentUpdateError otherwise."""
        ...


class ConcurrentUpdateError(RuntimeError):
    """The record changed since it was read (ETag mismatch): re-read and try again."""


def retry_on_conflict(attempt: Callable[[int], T], *, attempts: int, gave_up: str) -> T:
    """Run `attempt(n)` (read, decide, one ETag-guarded write) again while its write meets a
    concurrent update, at most `attempts` times; then ConcurrentUpdateError(`gave_up`). The one
    RetryOnConflict of the record side (ARM writes have enforcement's `write_loop`, which also
    backs off): attempt 0 may use what the caller read already, later ones must read again."""
    for number in range(attempts):
        try:
            return attempt(number)
        except ConcurrentUpdateError:
            continue
    raise ConcurrentUpdateError(gave_up)


class AuditTrail(Protocol):
    def record(self, event: EventId, *, subject: str, actor: str, **details: object) -> None:
        """Append one audit event (`event` is a member of the catalogue, e.g. `grant.applied`)."""
        ...

    def for_subject(self, subject: str) -> list[Any]:
        """Every event about `subject`, oldest first (shared.audit.AuditEvent)."""
        ...
