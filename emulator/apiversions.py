"""The api-versions ARM registers per resource type, answered by `GET /subscriptions/{s}/providers`
(`resourceTypes[].apiVersions`, newest first) and enforced by the engine: a request with an
api-version its type does not register is refused as ARM refuses it (see `check`).

The lists are the versions the Network, Compute, Security and Resources RPs publish in the
azure-rest-api-specs (`specification/*/resource-manager/.../stable/*`), newest first, cut to those the
type existed in; they include every version the pinned SDKs send (azure-mgmt-network 33.1.0:
2026-03-01; azure-mgmt-compute 39.0.0: 2026-04-01 for VMs; azure-mgmt-security 7.0.0: 2020-01-01 for
JIT; azure-mgmt-resource 26.0.0: 2025-04-01; azure-mgmt-resource-subscriptions 1.0.0: 2022-12-01) and
the Azure CLI 2.91 sends (network aaz 2022-01-01 ... 2025-07-01, compute 2024-11-01, resources
2024-11-01). Microsoft.Authorization keeps its own list (emulator/providers/authorization.py).
"""

from __future__ import annotations

import re

from emulator.errors import ArmError

_NETWORK = [
    "2026-03-01", "2026-01-01", "2025-09-01", "2025-07-01", "2025-05-01", "2025-03-01", "2025-01-01",
    "2024-10-01", "2024-07-01", "2024-05-01", "2024-03-01", "2024-01-01", "2023-11-01", "2023-09-01",
    "2023-06-01", "2023-05-01", "2023-04-01", "2023-02-01", "2022-11-01", "2022-09-01", "2022-07-01",
    "2022-05-01", "2022-01-01", "2021-12-01", "2021-08-01", "2021-06-01", "2021-05-01", "2021-04-01",
    "2021-03-01", "2021-02-01", "2020-11-01", "2020-08-01", "2020-07-01", "2020-06-01", "2020-05-01",
    "2020-04-01", "2020-03-01", "2019-12-01", "2019-11-01", "2019-09-01", "2019-08-01", "2019-07-01",
    "2019-06-01", "2019-04-01", "2019-02-01", "2018-12-01", "2018-11-01", "2018-10-01", "2018-08-01",
    "2018-07-01", "2018-06-01", "2018-04-01", "2018-02-01", "2018-01-01", "2017-11-01", "2017-10-01",
    "2017-09-01", "2017-08-01", "2017-06-01", "2017-04-01", "2017-03-01", "2016-12-01", "2016-09-01",
    "2016-06-01", "2016-03-30", "2015-06-15", "2015-05-01-preview",
]  # fmt: skip
_COMPUTE_VM = [
    "2026-04-01", "2025-11-01", "2025-04-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-09-01",
    "2023-07-01", "2023-03-01", "2022-11-01", "2022-08-01", "2022-03-01", "2021-11-01", "2021-07-01",
    "2021-04-01", "2021-03-01", "2020-12-01", "2020-06-01", "2019-12-01", "2019-07-01", "2019-03-01",
    "2018-10-01", "2018-06-01", "2018-04-01", "2017-12-01", "2017-03-30", "2016-08-30",
    "2016-04-30-preview", "2016-03-30", "2015-06-15",
]  # fmt: skip
_RESOURCES = [
    "2025-04-01", "2025-03-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-07-01", "2022-12-01",
    "2022-09-01", "2022-01-01", "2021-04-01", "2021-01-01", "2020-10-01", "2020-08-01", "2020-06-01",
    "2020-01-01", "2019-11-01", "2019-10-01", "2019-09-01", "2019-08-01", "2019-07-01", "2019-06-01",
    "2019-05-10", "2019-05-01", "2019-03-01", "2018-06-01", "2018-05-01", "2018-02-01", "2017-05-10",
    "2016-09-01", "2016-07-01", "2016-06-01", "2016-02-01", "2015-11-01", "2015-01-01", "2014-04-01",
]  # fmt: skip
_SECURITY_JIT = ["2020-01-01", "2015-06-01-preview"]


def _since(versions: list[str], first: str) -> list[str]:
    return [v for v in versions if v[:10] >= first]


# namespace -> resource type -> api-versions (newest first)
PROVIDERS: dict[str, dict[str, list[str]]] = {
    "Microsoft.Network": {
        "networkSecurityGroups": _NETWORK,
        "networkSecurityGroups/securityRules": _NETWORK,
        "virtualNetworks": _NETWORK,
        "virtualNetworks/subnets": _NETWORK,
        "virtualNetworks/virtualNetworkPeerings": _since(_NETWORK, "2016-06-01"),
        "networkInterfaces": _NETWORK,
        "publicIPAddresses": _NETWORK,
        "azureFirewalls": _since(_NETWORK, "2018-04-01"),
        "firewallPolicies": _since(_NETWORK, "2019-06-01"),
        "firewallPolicies/ruleCollectionGroups": _since(_NETWORK, "2020-05-01"),
        "locations": _NETWORK,
        "locations/operations": _NETWORK,
        "locations/operationResults": _NETWORK,
        "locations/nfvOperations": _since(_NETWORK, "2019-06-01"),
        "locations/nfvOperationResults": _since(_NETWORK, "2019-06-01"),
        "operations": _NETWORK,
    },
    "Microsoft.Compute": {
        "virtualMachines": _COMPUTE_VM,
        "locations": _COMPUTE_VM,
        "locations/operations": _COMPUTE_VM,
        "operations": _COMPUTE_VM,
    },
    "Microsoft.Security": {
        "locations": ["2015-06-01-preview"],
        "locations/jitNetworkAccessPolicies": _SECURITY_JIT,
        "jitNetworkAccessPolicies": _SECURITY_JIT,
    },
    "Microsoft.Authorization": {
        "roleAssignments": [
            "2022-04-01",
            "2022-01-01-preview",
            "2020-10-01-preview",
            "2020-04-01-preview",
            "2018-09-01-preview",
            "2018-01-01-preview",
            "2017-10-01-preview",
            "2015-07-01",
        ],
        "roleDefinitions": ["2022-05-01-preview", "2022-04-01", "2018-01-01-preview", "2015-07-01"],
    },
    "Microsoft.Resources": {
        "resourceGroups": _RESOURCES,
        "resources": _RESOURCES,
        "subscriptions": _RESOURCES,
        "tenants": _RESOURCES,
        "locations": _RESOURCES,
        "providers": _RESOURCES,
        "tags": _since(_RESOURCES, "2019-10-01"),
    },
}
# Types ARM lists without locations (global).
GLOBAL_TYPES = frozenset(
    {
        "resourceGroups",
        "resources",
        "subscriptions",
        "tenants",
        "locations",
        "providers",
        "tags",
        "operations",
    }
)
_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}(-(preview|alpha|beta|privatepreview))?$", re.IGNORECASE)


def supported(namespace: str, resource_type: str) -> list[str] | None:
    """The api-versions of `namespace/resource_type`, or None when the emulator does not know it."""
    for ns, types in PROVIDERS.items():
        if ns.lower() == namespace.lower():
            for name, versions in types.items():
                if name.lower() == resource_type.lower():
                    return versions
    return None


def check(api_version: str, namespace: str, resource_type: str, location: str = "global") -> None:
    """Refuse an api-version the type does not register, as ARM does: a malformed one is 400
    `InvalidApiVersionParameter`; a well-formed one the type lacks is, for Microsoft.Resources' own
    endpoints (resource groups, subscriptions, ...), 400 `InvalidApiVersionParameter` ("The api-version
    '...' is invalid. The supported versions are '...'"), and for a resource provider's type 400
    `NoRegisteredProviderFound` ("No registered resource provider found for location '...' and API
    version '...' for type '...'. The supported api-versions are '...'")."""
    versions = supported(namespace, resource_type)
    if versions is None or api_version.lower() in (v.lower() for v in versions):
        return
    listed = ", ".join(versions)
    if not _FORMAT.match(api_version) or namespace.lower() == "microsoft.resources":
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{api_version}' is invalid. The supported versions are '{','.join(versions)}'.",
        )
    raise ArmError(
        400,
        "NoRegisteredProviderFound",
        f"No registered resource provider found for location '{location}' and API version '{api_version}' "
        f"for type '{resource_type}'. The supported api-versions are '{listed}'. The supported locations "
        "are 'westeurope, northeurope, eastus, westus, centralus, eastus2, uksouth, swedencentral'.",
    )
