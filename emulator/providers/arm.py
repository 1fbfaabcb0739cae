"""The ARM control plane around the resource types: what `az login`, `az account`, `az provider`,
`az resource`, `az tag` and `az cloud register` read before they touch a resource.

- `GET /metadata/endpoints` (no authentication, as management.azure.com answers it): the cloud's
  endpoints; `authentication.loginEndpoint` is the engine's `login_endpoint` (localrig's OpenID
  Connect issuer), `resourceManager` the emulator's own URL. Shape: the 2022-09-01 answer
  (`_arm_to_cli_mapper` in azure-cli's `azure/cli/core/cloud.py` reads `name`, `authentication.
  loginEndpoint`, `authentication.audiences[0]`, `resourceManager`, `suffixes`); api-version
  `2015-01-01` gets the older Azure Stack shape (`galleryEndpoint`, `graphEndpoint`, ...).
- `GET /subscriptions`, `/subscriptions/{id}`, `/tenants` (Microsoft.Resources subscriptions API
  2022-12-01 `Subscription`/`TenantIdDescription`; any subscription id exists; the list holds those
  with a resource group plus the configured defaults; the tenant is the token's `tid`).
- `GET /subscriptions/{s}/locations` (`Location` with `metadata`), `GET /subscriptions/{s}/providers
  [/{ns}]` (`Provider` with `resourceTypes[].apiVersions` from emulator/apiversions.py),
  `POST .../providers/{ns}/register`.
- `GET /subscriptions/{s}[/resourceGroups/{rg}]/resources` with `$filter` (`resourceType`, `name`,
  `location`, `resourceGroup` `eq '...'`, joined by `and`; `substringof('x', name)`; `tagName eq`
  [`and tagValue eq`]), `$top` and paging: the `GenericResourceExpanded` shape (id, name, type,
  location, tags, sku, kind, managedBy).
- Tags as an extension resource, `{scope}/providers/Microsoft.Resources/tags/default`: GET, PUT
  (replace), PATCH (`operation` Merge|Replace|Delete), DELETE, at subscription, resource group and
  resource scope (`TagsResource`); `GET /subscriptions/{s}/tagNames` (names, values and counts).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import TYPE_CHECKING, Any

from emulator import apiversions, ids
from emulator.engine import RESOURCE_GROUP_TYPE, Call, Response
from emulator.errors import ArmError, bad_request, resource_group_not_found

if TYPE_CHECKING:
    from emulator.engine import Engine

_SUB = r"/subscriptions/(?P<sub>[^/]+)"

# Regions the emulator answers for `GET /subscriptions/{s}/locations` (a subset of Azure's, with the
# metadata ARM's `Location` carries).
LOCATIONS: list[dict[str, str]] = [
    {"name": "westeurope", "displayName": "West Europe", "geography": "Europe", "paired": "northeurope",
     "physical": "Netherlands", "lat": "52.3667", "lon": "4.9"},
    {"name": "northeurope", "displayName": "North Europe", "geography": "Europe", "paired": "westeurope",
     "physical": "Ireland", "lat": "53.3478", "lon": "-6.2597"},
    {"name": "eastus", "displayName": "East US", "geography": "United States", "paired": "westus",
     "physical": "Virginia", "lat": "37.3719", "lon": "-79.8164"},
    {"name": "westus", "displayName": "West US", "geography": "United States", "paired": "eastus",
     "physical": "California", "lat": "37.783", "lon": "-122.417"},
    {"name": "centralus", "displayName": "Central US", "geography": "United States", "paired": "eastus2",
     "physical": "Iowa", "lat": "41.5908", "lon": "-93.6208"},
    {"name": "eastus2", "displayName": "East US 2", "geography": "United States", "paired": "centralus",
     "physical": "Virginia", "lat": "36.6681", "lon": "-78.3889"},
    {"name": "uksouth", "displayName": "UK South", "geography": "United Kingdom", "paired": "ukwest",
     "physical": "London", "lat": "50.941", "lon": "-0.799"},
    {"name": "swedencentral", "displayName": "Sweden Central", "geography": "Sweden",
     "paired": "swedensouth", "physical": "Gävle", "lat": "60.67488", "lon": "17.14127"},
]  # fmt: skip


def token_claims(call: Call) -> dict[str, Any]:
    """The bearer token's claims if it is a JWT (signature not checked: any token is accepted)."""
    authorization = call.headers.get("authorization", "")
    token = authorization.split(" ", 1)[1].strip() if " " in authorization else authorization
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def tenant_of(call: Call) -> str:
    tid = token_claims(call).get("tid")
    return tid if isinstance(tid, str) and tid else call.engine.tenant_id


# --- /metadata/endpoints -------------------------------------------------------------------------


def metadata_endpoints(call: Call, match: re.Match[str]) -> Response:
    login = call.engine.login_endpoint
    arm = call.base_url.rstrip("/") + "/"
    audiences = ["https://management.core.windows.net/", "https://management.azure.com/"]
    if call.api_version == "2015-01-01":  # the Azure Stack shape older clients ask for
        return Response(
            200,
            {
                "galleryEndpoint": arm,
                "graphEndpoint": "https://graph.windows.net/",
                "portalEndpoint": arm,
                "authentication": {"loginEndpoint": login, "audiences": audiences},
            },
        )
    cloud = {
        "portal": arm,
        "authentication": {
            "loginEndpoint": login,
            "audiences": audiences,
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "media": "https://rest.media.azure.net",
        "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/",
        "name": "Portcullis",
        "suffixes": {
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "keyVaultDns": "vault.azure.net",
            "storage": "core.windows.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "mhsmDns": "managedhsm.azure.net",
            "mysqlServerEndpoint": "mysql.database.azure.com",
            "postgresqlServerEndpoint": "postgres.database.azure.com",
            "mariadbServerEndpoint": "mariadb.database.azure.com",
            "synapseAnalytics": "dev.azuresynapse.net",
            "attestationEndpoint": "attest.azure.net",
        },
        "batch": "https://batch.core.windows.net/",
        "resourceManager": arm,
        "vmImageAliasDoc": (
            "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/quickstart-templates/"
            "aliases.json"
        ),
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
    }
    return Response(200, cloud)


# --- subscriptions and tenants ---------------------------------------------------------------------


def _subscription(call: Call, sub: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{sub}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub,
        "tenantId": tenant_of(call),
        "displayName": f"Portcullis emulator ({sub[-4:]})",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def known_subscriptions(call: Call) -> list[str]:
    found: dict[str, str] = {}
    for sub in call.engine.default_subscriptions:
        found.setdefault(sub.lower(), sub)
    for record in call.store.list(RESOURCE_GROUP_TYPE):
        sub = record.id.split("/")[2]
        found.setdefault(sub.lower(), sub)
    return sorted(found.values(), key=str.lower)


def list_subscriptions(call: Call, match: re.Match[str]) -> Response:
    return call.engine._page(call, [_subscription(call, sub) for sub in known_subscriptions(call)])


def get_subscription(call: Call, match: re.Match[str]) -> Response:
    return Response(200, _subscription(call, match.group("sub")))


def list_tenants(call: Call, match: re.Match[str]) -> Response:
    tid = tenant_of(call)
    return Response(
        200,
        {
            "value": [
                {
                    "id": f"/tenants/{tid}",
                    "tenantId": tid,
                    "countryCode": "US",
                    "displayName": "Portcullis local tenant",
                    "domains": ["portcullis.localhost"],
                    "tenantCategory": "Home",
                    "defaultDomain": "portcullis.localhost",
                    "tenantType": "AAD",
                }
            ]
        },
    )


# --- locations and providers -----------------------------------------------------------------------


def list_locations(call: Call, match: re.Match[str]) -> Response:
    sub = match.group("sub")
    value = []
    for loc in LOCATIONS:
        value.append(
            {
                "id": f"/subscriptions/{sub}/locations/{loc['name']}",
                "name": loc["name"],
                "type": "Region",
                "displayName": loc["displayName"],
                "regionalDisplayName": f"({loc['geography']}) {loc['displayName']}",
                "metadata": {
                    "regionType": "Physical",
                    "regionCategory": "Recommended",
                    "geography": loc["geography"],
                    "geographyGroup": loc["geography"],
                    "longitude": loc["lon"],
                    "latitude": loc["lat"],
                    "physicalLocation": loc["physical"],
                    "pairedRegion": [
                        {"name": loc["paired"], "id": f"/subscriptions/{sub}/locations/{loc['paired']}"}
                    ],
                },
            }
        )
    return Response(200, {"value": value})


def _provider(sub: str, namespace: str) -> dict[str, Any]:
    locations = [loc["displayName"] for loc in LOCATIONS]
    types = apiversions.PROVIDERS[namespace]
    return {
        "id": f"/subscriptions/{sub}/providers/{namespace}",
        "namespace": namespace,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": [
            {
                "resourceType": resource_type,
                "locations": [] if resource_type in apiversions.GLOBAL_TYPES else locations,
                "apiVersions": versions,
                **({"defaultApiVersion": versions[0]} if versions else {}),
                "capabilities": "None",
            }
            for resource_type, versions in types.items()
        ],
    }


def list_providers(call: Call, match: re.Match[str]) -> Response:
    sub = match.group("sub")
    return call.engine._page(call, [_provider(sub, ns) for ns in apiversions.PROVIDERS])


def _namespace(given: str) -> str:
    for namespace in apiversions.PROVIDERS:
        if namespace.lower() == given.lower():
            return namespace
    raise ArmError(
        404,
        "InvalidResourceNamespace",
        f"The resource namespace '{given}' is invalid.",
    )


def get_provider(call: Call, match: re.Match[str]) -> Response:
    return Response(200, _provider(match.group("sub"), _namespace(match.group("ns"))))


def register_provider(call: Call, match: re.Match[str]) -> Response:
    return Response(200, _provider(match.group("sub"), _namespace(match.group("ns"))))


# --- resources list with $filter ---------------------------------------------------------------------

_CONDITION = re.compile(r"^\s*(?P<field>\w+)\s+eq\s+'(?P<value>(?:[^']|'')*)'\s*$", re.IGNORECASE)
_SUBSTRINGOF = re.compile(r"^\s*substringof\(\s*'(?P<value>(?:[^']|'')*)'\s*,\s*name\s*\)\s*$", re.IGNORECASE)
_FIELDS = {"resourcetype": "type", "name": "name", "location": "location", "resourcegroup": "resourceGroup",
           "tagname": "tagName", "tagvalue": "tagValue"}  # fmt: skip


def _invalid_filter(text: str) -> ArmError:
    return bad_request(
        "InvalidFilterInQueryString",
        f"The $filter '{text}' is not supported. Supported: resourceType, name, location, resourceGroup "
        "'eq' conditions joined by 'and', substringof('...', name), or tagName eq '...' "
        "[and tagValue eq '...'].",
    )


def parse_filter(text: str | None) -> list[tuple[str, str]]:
    """[(field, value)] of an ARM resources `$filter`; `substringof` comes back as ('substringof', v)."""
    if not text or not text.strip():
        return []
    conditions: list[tuple[str, str]] = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        match = _CONDITION.match(part)
        if match and match.group("field").lower() in _FIELDS:
            conditions.append(
                (_FIELDS[match.group("field").lower()], match.group("value").replace("''", "'"))
            )
            continue
        match = _SUBSTRINGOF.match(part)
        if match:
            conditions.append(("substringof", match.group("value").replace("''", "'")))
            continue
        raise _invalid_filter(text)
    fields = [field for field, _ in conditions]
    if "tagValue" in fields and "tagName" not in fields:
        raise _invalid_filter(text)
    if "tagName" in fields and any(f not in ("tagName", "tagValue") for f in fields):
        # ARM: a tag filter cannot be combined with other conditions
        raise _invalid_filter(text)
    return conditions


def _matches(body: dict[str, Any], rid: ids.ResourceId, conditions: list[tuple[str, str]]) -> bool:
    tags = body.get("tags") or {}
    tag_name = next((v for f, v in conditions if f == "tagName"), None)
    for field, value in conditions:
        if field == "type" and not ids.same(rid.type_key, value):
            return False
        if field == "name" and not ids.same(rid.name, value):
            return False
        if (
            field == "location"
            and str(body.get("location", "")).replace(" ", "").lower() != value.replace(" ", "").lower()
        ):
            return False
        if field == "resourceGroup" and not ids.same(rid.resource_group or "", value):
            return False
        if field == "substringof" and value.lower() not in rid.name.lower():
            return False
        if field == "tagName" and not any(ids.same(k, value) for k in tags):
            return False
        if field == "tagValue":
            actual = next(
                (v for k, v in tags.items() if tag_name is not None and ids.same(k, tag_name)), None
            )
            if actual != value:
                return False
    return True


def _generic(body: dict[str, Any]) -> dict[str, Any]:
    fields = ("id", "name", "type", "sku", "kind", "managedBy", "location", "identity", "plan")
    answer = {k: body[k] for k in fields if k in body}
    answer["tags"] = body.get("tags") or {}
    return answer


def _top_level(record_id: str) -> ids.ResourceId | None:
    rid = ids.parse(record_id)
    if rid is None or rid.resource_group is None or len(rid.types) != 1:
        return None
    if (
        rid.scope.rstrip("/").lower()
        != f"/subscriptions/{rid.subscription}/resourcegroups/{rid.resource_group}".lower()
    ):
        return None
    return rid


def resources_under(call: Call, scope: str) -> Response:
    conditions = parse_filter(call.query_value("$filter"))
    items = []
    for record in call.store.all():
        if record.type_key.lower() == RESOURCE_GROUP_TYPE.lower():
            continue
        rid = _top_level(record.id)
        if rid is None or not ids.key(record.id).startswith(ids.key(scope) + "/"):
            continue
        if _matches(record.body, rid, conditions):
            items.append(record.body)
    items.sort(key=lambda body: ids.key(body["id"]))
    top = call.query_value("$top")
    if top:
        try:
            items = items[: max(0, int(top))]
        except ValueError:
            raise bad_request("InvalidTopInQueryString", f"The $top '{top}' is not an integer.") from None
    return call.engine._page(call, items, render=_generic)


def list_resources(call: Call, match: re.Match[str]) -> Response:
    return resources_under(call, f"/subscriptions/{match.group('sub')}")


def list_resources_in_group(call: Call, match: re.Match[str]) -> Response:
    rg_id = f"/subscriptions/{match.group('sub')}/resourceGroups/{match.group('rg')}"
    if call.store.get(rg_id) is None:
        raise resource_group_not_found(match.group("rg"))
    return resources_under(call, rg_id)


# --- tags at any scope -------------------------------------------------------------------------------

_TAGS_SUFFIX = "/providers/Microsoft.Resources/tags/default"


def _subscription_tags(call: Call) -> dict[str, dict[str, str]]:
    extra: dict[str, dict[str, str]] = call.store.extra.setdefault("subscription_tags", {})
    return extra


def _read_tags(call: Call, scope: str) -> dict[str, str]:
    if re.fullmatch(r"/subscriptions/[^/]+", scope, re.IGNORECASE):
        return dict(_subscription_tags(call).get(scope.lower(), {}))
    record = call.store.get(scope)
    if record is None:
        _scope_not_found(call, scope)
    assert record is not None
    return dict(record.body.get("tags") or {})


def _scope_not_found(call: Call, scope: str) -> None:
    rid = ids.parse(scope)
    if rid is not None:
        call.engine.require_scope(rid)
        raise call.engine.not_found(rid)
    match = re.fullmatch(r"/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)", scope, re.IGNORECASE)
    if match:
        raise resource_group_not_found(match.group("rg"))
    raise ArmError(400, "InvalidResourceType", f"The scope '{scope}' is not a taggable resource.")


def _write_tags(call: Call, scope: str, tags: dict[str, str]) -> None:
    if re.fullmatch(r"/subscriptions/[^/]+", scope, re.IGNORECASE):
        _subscription_tags(call)[scope.lower()] = tags
        call.store.mark_dirty()
        return
    record = call.store.get(scope)
    if record is None:
        _scope_not_found(call, scope)
    assert record is not None
    body = copy.deepcopy(record.body)
    body["tags"] = tags
    call.store.put(record.id, record.type_key, body)


def _tags_resource(scope: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "id": scope + _TAGS_SUFFIX,
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": tags},
    }


def _request_tags(call: Call) -> tuple[str | None, dict[str, str]]:
    body = call.json_object()
    properties = body.get("properties")
    tags = properties.get("tags") if isinstance(properties, dict) else None
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise bad_request(
            "InvalidRequestContent", "properties.tags must be an object of strings.", "properties.tags"
        )
    operation = body.get("operation")
    return (operation if isinstance(operation, str) else None), tags


def tags_handler(call: Call, match: re.Match[str]) -> Response:
    scope = match.group("scope")
    if call.method == "GET":
        return Response(200, _tags_resource(scope, _read_tags(call, scope)))
    if call.method == "DELETE":
        _read_tags(call, scope)
        _write_tags(call, scope, {})
        return Response(200)
    operation, tags = _request_tags(call)
    current = _read_tags(call, scope)
    if call.method == "PUT":
        new = tags
    else:  # PATCH
        kind = (operation or "").lower()
        if kind == "merge":
            new = {**current, **tags}
        elif kind == "replace":
            new = tags
        elif kind == "delete":
            new = {k: v for k, v in current.items() if not (k in tags and tags[k] == v)}
        else:
            raise bad_request(
                "InvalidRequestContent", "operation must be one of Merge, Replace, Delete.", "operation"
            )
    if len(new) > 50:
        raise bad_request("InvalidTagCount", "A resource can carry at most 50 tags.", "properties.tags")
    _write_tags(call, scope, new)
    return Response(200, _tags_resource(scope, new))


def list_tag_names(call: Call, match: re.Match[str]) -> Response:
    """`GET /subscriptions/{s}/tagNames` (`az tag list`): every tag name on the subscription's resource
    groups and top-level resources, with its values and counts (`TagDetails`/`TagValue`)."""
    sub = match.group("sub")
    scope = f"/subscriptions/{sub}"
    names: dict[str, dict[str, int]] = {}
    spelled: dict[str, str] = {}
    for record in call.store.all():
        is_group = record.type_key.lower() == RESOURCE_GROUP_TYPE.lower()
        if not ids.key(record.id).startswith(ids.key(scope) + "/"):
            continue
        if not is_group and _top_level(record.id) is None:
            continue
        for name, value in (record.body.get("tags") or {}).items():
            key = ids.fold(name)
            spelled.setdefault(key, name)
            values = names.setdefault(key, {})
            values[str(value)] = values.get(str(value), 0) + 1
    items = []
    for key in sorted(names):
        name = spelled[key]
        values = names[key]
        items.append(
            {
                "id": f"{scope}/tagNames/{name}",
                "tagName": name,
                "count": {"type": "Total", "value": sum(values.values())},
                "values": [
                    {
                        "id": f"{scope}/tagNames/{name}/tagValues/{value}",
                        "tagValue": value,
                        "count": {"type": "Total", "value": count},
                    }
                    for value, count in sorted(values.items())
                ],
            }
        )
    return call.engine._page(call, items)


def register(engine: Engine) -> None:
    engine.route("GET", r"/metadata/endpoints", metadata_endpoints, anonymous=True)
    engine.route("GET", r"/tenants", list_tenants)
    engine.route("GET", r"/subscriptions", list_subscriptions)
    engine.route("GET", _SUB, get_subscription)
    engine.route("GET", _SUB + r"/locations", list_locations)
    engine.route("GET", _SUB + r"/providers", list_providers)
    engine.route("GET", _SUB + r"/providers/(?P<ns>[^/]+)", get_provider)
    engine.route("POST", _SUB + r"/providers/(?P<ns>[^/]+)/register", register_provider)
    engine.route("GET", _SUB + r"/resources", list_resources)
    engine.route("GET", _SUB + r"/tagNames", list_tag_names)
    engine.route("GET", _SUB + r"/resourceGroups/(?P<rg>[^/]+)/resources", list_resources_in_group)
    engine.route(
        "*", r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Resources/tags/default", tags_handler
    )
