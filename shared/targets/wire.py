"""Raw wire JSON in and out of the azure-mgmt SDK operations, so what we write back is what ARM sent.

The pinned SDK models only the properties of its api-version. A property the service added later
(or one the SDK does not model) would be lost if we round-tripped through models; so the adapters
read the JSON ARM answered, change only our rules in it, and PUT that JSON. For GET and PUT the
SDK operation still does everything else: URL and api-version, authentication, the pipeline's retry
policy (shared/azure_clients.py), error mapping to `HttpResponseError`, and long-running-operation
polling. Lists go through the client's pipeline too, with a URL of our own (`list_raw` says why).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat

WireBody = dict[str, Any]
# The api-version azure-mgmt-network (pinned in requirements.txt) sends by default; list_raw uses it
# so listed bodies match what the SDK's GETs answer (tests/integration/test_write_back.py checks).
NETWORK_API_VERSION = "2026-03-01"
_LIST_ERRORS: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
}


def _raw_body(pipeline_response: Any, deserialized: Any, headers: Any) -> WireBody:
    """`cls=` hook of a single-resource operation: the answer's JSON instead of the model."""
    body: WireBody = pipeline_response.http_response.json()
    return body


def get_raw(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> WireBody:
    """Call an SDK `get` and return the JSON ARM answered (with `etag`), not the SDK model.

    `operation` is a bound SDK method such as `client.network_security_groups.get`; `args` and
    `kwargs` are its own. Errors are raised as the SDK raises them (404 `ResourceNotFoundError`...).
    """
    body: WireBody = operation(*args, cls=_raw_body, **kwargs)
    return body


def put_raw(begin_operation: Callable[..., Any], *args: Any, body: WireBody, headers: dict[str, str]) -> None:
    """PUT `body` as JSON bytes through an SDK `begin_create_or_update` and wait for its operation.

    The SDK sends bytes unchanged (no model serialisation, so nothing it does not model is
    dropped); `headers` carries `If-Match` / `If-None-Match`. Polling and a Failed operation
    (`HttpResponseError`) are the SDK's.
    """
    payload = json.dumps(body, separators=(",", ":")).encode()
    begin_operation(*args, payload, headers=headers, content_type="application/json").result()


def list_raw(client: Any, path: str, *, api_version: str = NETWORK_API_VERSION) -> Iterator[WireBody]:
    """Every item of an ARM list as the JSON ARM answered, page after page, following `nextLink`.

    Contract:
    - `client` is an azure-mgmt client built by shared/azure_clients.py (`network_client(sub)`;
      anything with the generated `send_request`), so requests go through its pipeline:
      authentication, user agent, and the read retries (reads: 429/5xx retried, `Retry-After`
      honoured).
    - `path` is the collection's ARM path without query, e.g.
      `/subscriptions/{sub}/providers/Microsoft.Network/networkSecurityGroups`
      (`.../azureFirewalls`, `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/
      firewallPolicies/{policy}/ruleCollectionGroups`); `api_version` defaults to the one the pinned
      azure-mgmt-network speaks, so listed bodies have the same shape as the SDK's GETs.
    - Yields each element of each page's `value` array unchanged (unknown properties, `etag`, the
      children inside the body), in ARM's order; one HTTP GET per page, lazily as the caller
      iterates. Nothing is cached: iterate again to list again.
    - A refused page raises as the SDK's operations do (`ResourceNotFoundError` for 404,
      `ClientAuthenticationError` for 401, else `HttpResponseError` with ARM's error code), from the
      iteration, possibly after earlier pages were yielded: a caller that needs a complete listing
      must treat an error as "no listing", never as a shorter one.

    Why not the SDK's `list_all`: its pager turns every item into a model before any `cls=` hook sees
    it, which costs about 4 ms per NSG (8 s for 2,000 NSGs, measured) and is thrown away here.
    """
    url: str | None = f"{path}?api-version={api_version}"
    while url:
        response = client.send_request(HttpRequest("GET", url))
        if response.status_code != 200:
            map_error(response.status_code, response, _LIST_ERRORS)
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        body = response.json() or {}
        yield from body.get("value") or []
        url = body.get("nextLink") or None
