"""Resource ids: `{scope}/providers/{Namespace}/{type}/{name}[/{childType}/{childName}...]`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

_SUBSCRIPTION = re.compile(r"^/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+))?", re.IGNORECASE)


# .NET's ordinal casing table keeps dotless i and long s (dotnet/runtime pal_casing.c,
# GlobalizationNative_InitOrdinalCasingPage), although Unicode upper-cases them to 'I' and 'S'.
_ORDINAL_CASING_KEEPS = frozenset({"\u0131", "\u017f"})


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    if char in _ORDINAL_CASING_KEEPS:
        return char
    upper = char.upper()
    if len(upper) == 1:
        return upper
    title = char.title()  # the simple mapping where the full one grows (U+1F80), else itself (ß)
    return title if len(title) == 1 else char


def fold(name: str) -> str:
    """A name as ARM compares it: .NET `OrdinalIgnoreCase`, i.e. the invariant *simple* upper-case
    mapping per character, not Python's `lower()` (which makes KELVIN SIGN U+212A a 'k'). 'ß' stays
    'ß' (not 'SS'), dotless i U+0131 and dotted İ U+0130 are letters of their own. ASCII letters come
    out lower-case (nothing outside ASCII folds into ASCII), so ASCII ids key as they always did."""
    if name.isascii():
        return name.lower()
    return "".join(c.lower() if (c := _fold_char(ch)).isascii() else c for ch in name)


def same(a: str, b: str) -> bool:
    """Are these the same name or id to ARM?"""
    return fold(a) == fold(b)


def key(resource_id: str) -> str:
    """The store key: ARM ids are case-insensitive, the way ARM is (`fold`)."""
    return fold(resource_id.rstrip("/"))


@dataclass(frozen=True)
class ResourceId:
    """A parsed id. `scope` is everything before the last `/providers/` (subscription, resource
    group, or another resource for extension resources such as role assignments)."""

    scope: str
    subscription: str | None
    resource_group: str | None
    namespace: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def type_key(self) -> str:
        """`Microsoft.Network/networkSecurityGroups/securityRules`: how types are registered."""
        return "/".join((self.namespace, *self.types))

    @property
    def parent(self) -> ResourceId | None:
        if len(self.names) < 2:
            return None
        return replace(self, types=self.types[:-1], names=self.names[:-1])

    @property
    def resource_group_id(self) -> str | None:
        if self.subscription is None or self.resource_group is None:
            return None
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    def __str__(self) -> str:
        pairs = "/".join(f"{t}/{n}" for t, n in zip(self.types, self.names, strict=True))
        return f"{self.scope}/providers/{self.namespace}/{pairs}"

    def child(self, child_type: str, name: str) -> ResourceId:
        return replace(self, types=(*self.types, child_type), names=(*self.names, name))


def parse(resource_id: str) -> ResourceId | None:
    """Parse a full resource id; None when it is not one (a collection path, an action, garbage)."""
    path = resource_id.rstrip("/")
    lowered = path.lower()
    at = lowered.rfind("/providers/")
    if at < 0:
        return None
    scope, rest = path[:at], path[at + len("/providers/") :]
    segments = rest.split("/")
    if len(segments) < 3 or len(segments) % 2 == 0 or any(not s for s in segments):
        return None
    namespace, pairs = segments[0], segments[1:]
    match = _SUBSCRIPTION.match(scope)
    subscription = match.group("sub") if match else None
    resource_group = match.group("rg") if match else None
    return ResourceId(scope, subscription, resource_group, namespace, tuple(pairs[0::2]), tuple(pairs[1::2]))


def resource_group_id(subscription: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
