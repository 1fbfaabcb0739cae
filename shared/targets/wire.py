"""Raw wire JSON in and out of the azure-mgmt SDK operations, so what we write back is what ARM sent.

The pinned SDK models only the properties of its api-version. A property the service added later
(or one the SDK does not model) would be lost if we round-tripped through models; so the adapters
read the JSON ARM answered, change only our rules in it, and PUT that JSON. The SDK still does
everything else: URL and api-version, authentication, the pipeline's retry policy
(shared/azure_clients.py), error mapping to `HttpResponseError`, and long-running-operation polling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

WireBody = dict[str, Any]


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


def list_raw(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[WireBody]:
    """Every item of an SDK list operation as the JSON ARM answered, following `nextLink`.

    Contract:
    - `operation` is a bound SDK list method returning `ItemPaged`, e.g.
      `client.network_security_groups.list_all`, `client.azure_firewalls.list_all`,
      `client.firewall_policy_rule_collection_groups.list` (then `args` = resource group, policy).
    - Yields each element of each page's `value` array, unchanged (unknown properties, `etag`, the
      children inside the body), in ARM's order, page after page; one HTTP GET per page, lazily as
      the caller iterates. Nothing is cached: iterate again to list again.
    - Errors are the SDK's (`HttpResponseError` and subclasses), raised from the iteration, possibly
      after earlier pages were yielded: a caller that needs a complete listing must treat an error
      as "no listing", not as a shorter one.
    - Retries are those of the client's pipeline (reads, shared/azure_clients.py).

    How: the SDK's pager still fetches and follows `nextLink`; a `raw_response_hook` keeps the last
    HTTP answer of each page (retried attempts come first, the successful one last), and its JSON is
    what is yielded. The SDK's own models of the page are ignored.
    """
    last: list[Any] = []

    def keep(pipeline_response: Any) -> None:
        last[:] = [pipeline_response.http_response]

    pages = operation(*args, raw_response_hook=keep, **kwargs).by_page()
    for _ in pages:
        response = last.pop()
        body = response.json() or {}
        yield from body.get("value") or []
