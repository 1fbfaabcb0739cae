"""Desired rules per target and the difference from what is there (pure: no SDK, no storage).

Ownership: every rule we write has a name starting with `NAME_PREFIX` *and* a description marker
(`portcullis:grant=<id>;exp=<iso>` on grant rules, `portcullis:baseline;...` on the Deny baseline), so
a sweep without the Table can still tell what is ours and when it expires; a rule is ours only with
both (`owns_rule`). A rule with our prefix and no marker is someone else's (a person copying our
naming, `portcullis-jit-backup-exception`): kept byte for byte, never deleted, and reported as a
compliance finding. Our firewall collection and rule collection group are ours by their exact names.
Rules with any other name (people, IaC, Defender's `SecurityCenter-JITRule*`,
`MicrosoftDefenderForCloud-JITRule*`, `ASC-JIT`, `MDC-JIT`) are never in a plan's output: adapters
keep them byte for byte. Names are compared as ARM compares them (`shared.model.arm_key`).

One rule per grant: a newer request for the same VM and port supersedes the older one, so grants on
the same VM/port/protocol overlap only briefly and merging them would buy nothing but longer markers.

NSG priorities: Allow rules in the allow band, the Deny baseline in the deny band (both configured,
allow band numerically below the deny band, so an Allow of ours always wins over our Deny). A rule of
ours keeps its priority while it stays valid; new rules take the lowest free priority of their band
that no foreign rule uses. A full band refuses the grant on that target (reported, never squeezed in
by renumbering anyone).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from shared.model import Grant, PolicyPort, TransportProtocol, VmRef, arm_key, same_arm_name

NAME_PREFIX = "Portcullis-JIT-"
# Our classic-firewall NAT collection, our Firewall Policy rule collection group and its collection.
COLLECTION_NAME = "Portcullis-JIT"
RULE_COLLECTION_GROUP_NAME = "Portcullis-JIT"
POLICY_NAT_COLLECTION_NAME = "Portcullis-JIT-DNAT"
MARKER = "portcullis:"
MAX_RULE_NAME = 80
MAX_DESCRIPTION = 140
# Names Defender for Cloud gives its own JIT rules and collections (never ours, never touched).
DEFENDER_NAME_PREFIXES = ("securitycenter-jitrule", "microsoftdefenderforcloud-jitrule", "asc-jit", "mdc-jit")

# Sources that mean "the whole Internet" in an NSG rule or a firewall rule.
INTERNET_SOURCES = frozenset({"*", "internet", "0.0.0.0/0", "any", "0.0.0.0"})  # noqa: S104 - not a bind


def is_ours(name: str) -> bool:
    """Names in our namespace (our prefix, or our collection's name). A name alone does not make a
    rule ours: see `owns_rule`; collections and groups are ours by exact name (`is_our_collection`)."""
    folded = arm_key(name)
    return folded.startswith(arm_key(NAME_PREFIX)) or folded == arm_key(COLLECTION_NAME)


def owns_rule(name: str, description: str | None) -> bool:
    """A rule is ours when it has our name prefix *and* our description marker; a rule with only the
    prefix is foreign (kept, never deleted, reported)."""
    return is_ours(name) and parse_marker(description) is not None


def is_our_collection(name: str) -> bool:
    """Our classic NAT collection / Firewall Policy rule collection group / the DNAT collection inside
    that group: by exact name, never by prefix (`Portcullis-JIT-backup` is someone else's)."""
    return (
        same_arm_name(name, COLLECTION_NAME)
        or same_arm_name(name, RULE_COLLECTION_GROUP_NAME)
        or same_arm_name(name, POLICY_NAT_COLLECTION_NAME)
    )


def is_defender(name: str) -> bool:
    return arm_key(name).startswith(DEFENDER_NAME_PREFIXES)


# ---- markers ----


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def grant_marker(grant_id: str, expires: datetime) -> str:
    marker = f"{MARKER}grant={grant_id};exp={_iso(expires)}"
    if len(marker) > MAX_DESCRIPTION:
        # Ids are ours (short); a very long one is cut, the expiry always survives.
        head = f"{MARKER}exp={_iso(expires)};grant="
        marker = head + grant_id[: MAX_DESCRIPTION - len(head)]
    return marker


def baseline_marker(vm: VmRef, port: int) -> str:
    return f"{MARKER}baseline;port={port};vm={vm.name}"[:MAX_DESCRIPTION]


@dataclass(frozen=True)
class Marker:
    grant_id: str | None
    expires: datetime | None
    baseline: bool


_MARKER_FIELD = re.compile(r"(?P<key>[a-z]+)=(?P<value>[^;]*)")


def parse_marker(description: str | None) -> Marker | None:
    """The marker in a rule's description, or None when the description carries none."""
    if not description or not description.startswith(MARKER):
        return None
    body = description[len(MARKER) :]
    fields = {m["key"]: m["value"] for m in _MARKER_FIELD.finditer(body)}
    expires: datetime | None = None
    if "exp" in fields:
        try:
            expires = datetime.strptime(fields["exp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            expires = None
    return Marker(grant_id=fields.get("grant"), expires=expires, baseline=body.startswith("baseline"))


def marker_expired(description: str | None, now: datetime) -> bool:
    """Table-less sweep: a grant rule whose marker is unreadable or past its expiry is expired."""
    marker = parse_marker(description)
    if marker is None:
        return True
    if marker.baseline:
        return False
    return marker.expires is None or marker.expires <= now


# ---- names ----

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _safe_name(*parts: str) -> str:
    """An NSG/firewall rule name within 80 characters: word chars, `.`, `-`, `_`; ends in a word char."""
    name = _NAME_UNSAFE.sub("_", NAME_PREFIX + "-".join(parts))
    if len(name) > MAX_RULE_NAME:
        suffix = "-" + _short_hash(name)
        name = name[: MAX_RULE_NAME - len(suffix)] + suffix
    return name.rstrip(".-") or name


def allow_rule_name(grant: Grant) -> str:
    return _safe_name("Allow", str(grant.port), grant.grant_id)


# Bits of sha256 in a Deny name: 80 bits make an accidental collision among the Deny rules of one
# NSG (at most 1000 rules) about 1000^2 / 2^81, i.e. never; a duplicate is still refused by the
# planner (DuplicateRuleNameError), never merged.
DENY_HASH_HEX = 20


def deny_rule_name(vm: VmRef, port: PolicyPort) -> str:
    """`Portcullis-JIT-Deny-<port>-<proto>-<start of VM name>-<20 hex of sha256(vm key|port|proto)>`:
    at most 80 characters by construction (never cut afterwards, so the hash always survives), the
    hash over the VM's whole id as ARM keys it, the port and the protocol."""
    proto = "Any" if port.protocol is TransportProtocol.ANY else port.protocol.value
    digest = _short_hash(f"{vm.key}|{port.number}|{proto}", DENY_HASH_HEX)
    head = f"{NAME_PREFIX}Deny-{port.number}-{proto}-"
    room = MAX_RULE_NAME - len(head) - 1 - len(digest)
    vm_part = _NAME_UNSAFE.sub("_", vm.name)[:room].rstrip(".-_") or "vm"
    return f"{head}{vm_part}-{digest}"


class DuplicateRuleNameError(ValueError):
    """Two different rules of a plan got the same name: refuse the plan rather than drop one."""


def nat_rule_name(grant: Grant) -> str:
    return _safe_name(str(grant.port), grant.grant_id)


# ---- NSG rules ----


class Access(StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


def nsg_protocol(protocol: TransportProtocol) -> str:
    return {TransportProtocol.TCP: "Tcp", TransportProtocol.UDP: "Udp", TransportProtocol.ANY: "*"}[protocol]


def firewall_protocols(protocol: TransportProtocol) -> tuple[str, ...]:
    if protocol is TransportProtocol.ANY:
        return ("TCP", "UDP")
    return (protocol.value,)


@dataclass(frozen=True)
class NsgRule:
    """An inbound NSG rule, normalised: singular and plural fields merged, lists sorted."""

    name: str
    priority: int
    access: Access
    protocol: str
    source_prefixes: tuple[str, ...]
    destination_prefixes: tuple[str, ...]
    destination_ports: tuple[str, ...]
    description: str = ""
    direction: str = "Inbound"
    source_ports: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class PriorityBands:
    allow_first: int
    allow_last: int
    deny_first: int
    deny_last: int


@dataclass(frozen=True)
class NicOnTarget:
    """One VM's addresses that a target's rules are about (the NICs whose path crosses the NSG)."""

    vm: VmRef
    private_ips: tuple[str, ...]


@dataclass(frozen=True)
class BaselineEntry:
    """A VM covered by a policy, on this NSG: its ports get our Deny rules."""

    nic: NicOnTarget
    ports: tuple[PolicyPort, ...]


@dataclass(frozen=True)
class GrantOnNsg:
    """An open grant with a rule on this NSG. Behind a firewall the source is the firewall subnet."""

    grant: Grant
    nic: NicOnTarget
    firewall_subnet_prefix: str | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        if self.firewall_subnet_prefix:
            return (self.firewall_subnet_prefix,)
        return tuple(sorted(set(self.grant.source_prefixes)))


class FindingKind(StrEnum):
    PORT_OPEN_AHEAD_OF_DENY = "PortOpenToInternetAheadOfDeny"
    DENY_BAND_FULL = "DenyBandFull"
    # A rule named like ours without our marker: someone else's, kept, but worth a look.
    FOREIGN_RULE_WITH_OUR_PREFIX = "ForeignRuleWithOurPrefix"
    # A foreign rule already has the name one of ours needs: ours is not written there.
    RULE_NAME_TAKEN = "RuleNameTakenByForeignRule"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    rule_name: str
    vm: VmRef | None  # None: about the target as a whole (a foreign rule with our prefix)
    port: int
    detail: str


@dataclass(frozen=True)
class NsgPlan:
    desired: tuple[NsgRule, ...]  # every rule of ours that should be there, with priorities
    to_remove: tuple[str, ...]  # names of ours to delete
    to_put: tuple[NsgRule, ...]  # ours to add or restore
    refused: Mapping[str, str]  # grant id -> why it cannot get a rule here
    findings: tuple[Finding, ...]

    @property
    def changed(self) -> bool:
        return bool(self.to_remove or self.to_put)

    def rule_for(self, grant_id: str) -> NsgRule | None:
        for rule in self.desired:
            marker = parse_marker(rule.description)
            if marker is not None and marker.grant_id == grant_id:
                return rule
        return None


@dataclass
class _PriorityAllocator:
    used: set[int]
    first: int
    last: int
    cursor: int = field(init=False)

    def __post_init__(self) -> None:
        self.cursor = self.first

    def keep(self, priority: int) -> bool:
        if self.first <= priority <= self.last and priority not in self.used:
            self.used.add(priority)
            return True
        return False

    def next_free(self) -> int | None:
        while self.cursor <= self.last:
            candidate = self.cursor
            self.cursor += 1
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate
        return None


def _place(
    specs: Sequence[NsgRule],
    actual_ours: Mapping[str, NsgRule],
    allocator: _PriorityAllocator,
) -> tuple[list[NsgRule], list[NsgRule]]:
    """Give each spec a priority: its current one if still valid, else the next free. -> placed, unplaced"""
    placed: dict[str, NsgRule] = {}
    waiting: list[NsgRule] = []
    for spec in specs:
        current = actual_ours.get(arm_key(spec.name))
        if current is not None and allocator.keep(current.priority):
            placed[spec.name] = _with_priority(spec, current.priority)
        else:
            waiting.append(spec)
    unplaced: list[NsgRule] = []
    for spec in waiting:
        priority = allocator.next_free()
        if priority is None:
            unplaced.append(spec)
        else:
            placed[spec.name] = _with_priority(spec, priority)
    return [placed[s.name] for s in specs if s.name in placed], unplaced


def _with_priority(rule: NsgRule, priority: int) -> NsgRule:
    return NsgRule(
        name=rule.name,
        priority=priority,
        access=rule.access,
        protocol=rule.protocol,
        source_prefixes=rule.source_prefixes,
        destination_prefixes=rule.destination_prefixes,
        destination_ports=rule.destination_ports,
        description=rule.description,
        direction=rule.direction,
        source_ports=rule.source_ports,
    )


def plan_nsg(
    actual: Iterable[NsgRule],
    baseline: Iterable[BaselineEntry],
    grants: Iterable[GrantOnNsg],
    bands: PriorityBands,
    now: datetime,
) -> NsgPlan:
    """Our rules for one NSG: Deny per policy port, Allow per open grant; foreign rules untouched."""
    actual_rules = list(actual)
    foreign = [r for r in actual_rules if not owns_rule(r.name, r.description)]
    actual_ours = {arm_key(r.name): r for r in actual_rules if owns_rule(r.name, r.description)}
    foreign_names = {arm_key(r.name) for r in foreign}
    used_inbound = {r.priority for r in foreign if r.direction.lower() == "inbound"}
    findings: list[Finding] = [
        Finding(
            FindingKind.FOREIGN_RULE_WITH_OUR_PREFIX,
            r.name,
            None,
            0,
            f"rule {r.name!r} carries our name prefix {NAME_PREFIX!r} but not our description marker: it "
            "is not ours, so it is left as it is",
        )
        for r in foreign
        if is_ours(r.name)
    ]

    deny_specs: dict[str, NsgRule] = {}
    deny_subjects: dict[str, tuple[VmRef, int]] = {}
    for entry in sorted(baseline, key=lambda e: e.nic.vm.key):
        if not entry.nic.private_ips:
            continue
        for port in entry.ports:
            name = deny_rule_name(entry.nic.vm, port)
            if deny_subjects.get(arm_key(name)) == (entry.nic.vm, port.number):
                continue  # the same VM and port again (listed by two policies): one rule, the same rule
            if arm_key(name) in deny_specs:
                raise DuplicateRuleNameError(
                    f"Deny rule name {name!r} is planned twice (for {deny_subjects[arm_key(name)][0].id} "
                    f"and {entry.nic.vm.id}, port {port.number}); refusing rather than dropping one"
                )
            if arm_key(name) in foreign_names:
                findings.append(
                    Finding(
                        FindingKind.RULE_NAME_TAKEN,
                        name,
                        entry.nic.vm,
                        port.number,
                        f"a foreign rule is named {name!r}, the name of our Deny rule for this VM and "
                        "port; it is left as it is and our Deny is not written",
                    )
                )
                continue
            deny_subjects[arm_key(name)] = (entry.nic.vm, port.number)
            deny_specs[arm_key(name)] = NsgRule(
                name=name,
                priority=0,
                access=Access.DENY,
                protocol=nsg_protocol(port.protocol),
                source_prefixes=("*",),
                destination_prefixes=tuple(sorted(entry.nic.private_ips)),
                destination_ports=(str(port.number),),
                description=baseline_marker(entry.nic.vm, port.number),
            )

    allow_specs: list[NsgRule] = []
    grant_of_rule: dict[str, str] = {}
    name_taken: dict[str, str] = {}
    for placement in sorted(grants, key=lambda g: (g.grant.start_time, g.grant.grant_id)):
        grant = placement.grant
        if not grant.is_open_at(now) or not placement.nic.private_ips:
            continue
        name = allow_rule_name(grant)
        if arm_key(name) in grant_of_rule:
            raise DuplicateRuleNameError(
                f"Allow rule name {name!r} is planned twice (grants {grant_of_rule[arm_key(name)]} and "
                f"{grant.grant_id}); refusing rather than dropping one"
            )
        if arm_key(name) in foreign_names:
            name_taken[grant.grant_id] = f"a foreign rule on this NSG is already named {name!r}"
            continue
        allow_specs.append(
            NsgRule(
                name=name,
                priority=0,
                access=Access.ALLOW,
                protocol=nsg_protocol(grant.protocol),
                source_prefixes=placement.sources,
                destination_prefixes=tuple(sorted(placement.nic.private_ips)),
                destination_ports=(str(grant.port),),
                description=grant_marker(grant.grant_id, grant.end_time),
            )
        )
        grant_of_rule[arm_key(name)] = grant.grant_id

    allow_placed, allow_unplaced = _place(
        allow_specs, actual_ours, _PriorityAllocator(set(used_inbound), bands.allow_first, bands.allow_last)
    )
    deny_placed, deny_unplaced = _place(
        list(deny_specs.values()),
        actual_ours,
        _PriorityAllocator(set(used_inbound), bands.deny_first, bands.deny_last),
    )
    refused = {
        **name_taken,
        **{
            grant_of_rule[arm_key(r.name)]: (
                f"the NSG's allow priority band {bands.allow_first}-{bands.allow_last} is full"
            )
            for r in allow_unplaced
        },
    }
    findings.extend(
        Finding(
            FindingKind.DENY_BAND_FULL,
            r.name,
            deny_subjects[arm_key(r.name)][0],
            deny_subjects[arm_key(r.name)][1],
            f"no free priority in the deny band {bands.deny_first}-{bands.deny_last}",
        )
        for r in deny_unplaced
    )
    desired = tuple(allow_placed + deny_placed)
    desired_by_name = {arm_key(r.name): r for r in desired}
    to_remove = tuple(sorted(name for name in actual_ours if name not in desired_by_name))
    to_put = tuple(r for r in desired if actual_ours.get(arm_key(r.name)) != r)
    to_remove = tuple(actual_ours[name].name for name in to_remove)
    findings.extend(compliance_findings(foreign, deny_placed, deny_subjects))
    return NsgPlan(desired, to_remove, to_put, refused, tuple(findings))


# ---- compliance: a foreign rule opening a protected port to the Internet ahead of our Deny ----


def _port_ranges_cover(ranges: Iterable[str], port: int) -> bool:
    for text in ranges:
        text = text.strip()
        if text in {"*", ""}:
            return True
        low, _, high = text.partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            continue
    return False


def _prefix_covers(prefixes: Iterable[str], addresses: Iterable[str]) -> bool:
    wanted = [ipaddress.ip_address(a) for a in addresses]
    for prefix in prefixes:
        lowered = prefix.strip().lower()
        if lowered in {"*", "any", "virtualnetwork", "0.0.0.0/0"}:
            return True
        try:
            network = ipaddress.ip_network(prefix.strip(), strict=False)
        except ValueError:
            continue
        if any(address in network for address in wanted):
            return True
    return False


def _protocols_overlap(a: str, b: str) -> bool:
    return a == "*" or b == "*" or a.lower() == b.lower()


def compliance_findings(
    foreign: Iterable[NsgRule],
    our_denies: Iterable[NsgRule],
    subjects: Mapping[str, tuple[VmRef, int]],
) -> list[Finding]:
    findings: list[Finding] = []
    for deny in our_denies:
        vm, port = subjects[arm_key(deny.name)]
        for rule in foreign:
            if (
                rule.direction.lower() == "inbound"
                and rule.access is Access.ALLOW
                and rule.priority < deny.priority
                and any(s.strip().lower() in INTERNET_SOURCES for s in rule.source_prefixes)
                and _prefix_covers(rule.destination_prefixes, deny.destination_prefixes)
                and _port_ranges_cover(rule.destination_ports, port)
                and _protocols_overlap(rule.protocol, deny.protocol)
            ):
                findings.append(
                    Finding(
                        FindingKind.PORT_OPEN_AHEAD_OF_DENY,
                        rule.name,
                        vm,
                        port,
                        f"rule {rule.name!r} (priority {rule.priority}) allows the Internet to port {port} "
                        f"ahead of our Deny {deny.name!r} (priority {deny.priority})",
                    )
                )
    return findings


# ---- firewall DNAT rules (classic collections and Firewall Policy groups alike) ----


@dataclass(frozen=True)
class NatRule:
    name: str
    description: str
    protocols: tuple[str, ...]
    source_addresses: tuple[str, ...]
    destination_address: str
    destination_port: int
    translated_address: str
    translated_port: int


@dataclass(frozen=True)
class GrantOnFirewall:
    grant: Grant
    vm_private_ip: str
    firewall_public_ip: str


@dataclass(frozen=True)
class FirewallPlan:
    desired: tuple[NatRule, ...]  # sorted by name; empty = our collection/group should not exist
    priority: int
    changed: bool
    refused: Mapping[str, str]

    def rule_for(self, grant_id: str) -> NatRule | None:
        for rule in self.desired:
            marker = parse_marker(rule.description)
            if marker is not None and marker.grant_id == grant_id:
                return rule
        return None


def plan_firewall(
    actual_ours: Iterable[NatRule] | None,
    actual_priority: int | None,
    grants: Iterable[GrantOnFirewall],
    priority: int,
    now: datetime,
) -> FirewallPlan:
    """Our DNAT rules on one firewall (or policy). `actual_ours` None = our collection is absent.

    Grants must already carry their mapped port (see `allocate_mapped_ports`); one without is refused.
    """
    desired: list[NatRule] = []
    refused: dict[str, str] = {}
    for placement in grants:
        grant = placement.grant
        if not grant.is_open_at(now):
            continue
        if grant.mapped_port is None:
            refused[grant.grant_id] = "no mapped port could be allocated"
            continue
        desired.append(
            NatRule(
                name=nat_rule_name(grant),
                description=grant_marker(grant.grant_id, grant.end_time),
                protocols=firewall_protocols(grant.protocol),
                source_addresses=tuple(sorted(set(grant.source_prefixes))),
                destination_address=placement.firewall_public_ip,
                destination_port=grant.mapped_port,
                translated_address=placement.vm_private_ip,
                translated_port=grant.port,
            )
        )
    desired.sort(key=lambda r: r.name)
    names = [arm_key(r.name) for r in desired]
    if len(set(names)) != len(names):
        twice = sorted({r.name for r in desired if names.count(arm_key(r.name)) > 1})
        raise DuplicateRuleNameError(f"DNAT rule names planned twice: {twice}; refusing rather than merging")
    if actual_ours is None:
        changed = bool(desired)
    else:
        current = sorted(actual_ours, key=lambda r: r.name)
        changed = current != desired or (bool(desired) and actual_priority != priority) or not desired
    return FirewallPlan(tuple(desired), priority, changed, refused)


def allocate_mapped_ports(
    needing: Sequence[tuple[str, str]],
    taken_by_ip: Mapping[str, set[int]],
    first: int,
    last: int,
) -> tuple[dict[str, int], dict[str, str]]:
    """Ports on a firewall public IP for grants that need one: (grant id, public IP) -> port.

    `taken_by_ip` holds every port a DNAT rule on that IP uses (ours or anyone's) and every port a
    grant still holds (not confirmed removed), so a port is never shared and never reused while held.
    """
    taken = {ip: set(ports) for ip, ports in taken_by_ip.items()}
    allocated: dict[str, int] = {}
    refused: dict[str, str] = {}
    for grant_id, public_ip in needing:
        used = taken.setdefault(public_ip, set())
        port = next((p for p in range(first, last + 1) if p not in used), None)
        if port is None:
            refused[grant_id] = f"every mapped port {first}-{last} on {public_ip} is in use"
            continue
        used.add(port)
        allocated[grant_id] = port
    return allocated, refused


def connection_commands(address: str | None, port: int, user: str = "<user>") -> dict[str, str] | None:
    """Ready-to-paste lines for the user: the firewall's IP and mapped port, or the VM's public IP."""
    if not address:
        return None
    return {
        "address": address,
        "port": str(port),
        "ssh": f"ssh -p {port} {user}@{address}",
        "rdp": f"mstsc /v:{address}:{port}",
    }
