"""Azure Resource Manager clients built from settings: the one place that knows the endpoint,
the credential, the CA bundle and the retry policy, so the same code talks to Azure or to the local
emulator.

Who retries (issue 16 item 4): one owner per kind of request, never two stacked.
- **Writes** (PUT, PATCH, DELETE, POST) are retried only by enforcement's own bounded loop
  (`shared/enforcement/reconciler.py` `write_loop`: re-read on 412, back off honouring
  `Retry-After` on 409/429, give up after its attempts and record the failure). azure-core sends a
  write exactly once (`WRITE_RETRIES` = 0): a retry underneath would repeat a PUT whose `If-Match`
  is already stale, hide ARM's `Retry-After` from the loop that must honour it, and multiply the
  worst case (azure-core's default of 10 retries under 6 loop attempts is 66 PUTs against one busy
  target).
- **Reads** (GET, HEAD: resource reads, list pages, long-running-operation polling) keep a small
  azure-core retry (`READ_RETRIES`) on 408/429/5xx and dropped connections, honouring `Retry-After`:
  a read is idempotent, nothing above it retries a single page, and a poll that fails once must not
  fail a write that ARM already accepted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy

from shared.settings import ArmCredentialKind, Settings, get_settings

# Prefixes the SDK's User-Agent: marks our calls in ARM's activity log and in the emulator's request
# log, where tests/arm_calls.py tells the app's calls from test setup by it.
USER_AGENT = "portcullis/0.1.0"
# The queue trigger runs up to 24 invocations at once (batchSize 16 + newBatchThreshold 8) on shared
# clients; urllib3's default of 10 connections per host made it drop and reopen TLS connections.
CONNECTIONS_PER_HOST = 32
# With none of these set, requests' per-call scan of the environment (proxies, CA bundle, .netrc)
# finds nothing, so the shared session skips it; with any set, it reads them as usual.
_ENVIRONMENT_SETTINGS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NETRC",
)


# azure-core retries per read (so at most READ_RETRIES + 1 HTTP attempts) and per write (none).
READ_RETRIES = 2
WRITE_RETRIES = 0
READ_METHODS = frozenset({"GET", "HEAD"})
# Longest azure-core backoff between read retries when ARM gives no Retry-After.
READ_BACKOFF_MAX_SECONDS = 10


class ArmRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's RetryPolicy with the split above: reads as configured, writes sent once.

    azure-core retries any method on an answer that carries `Retry-After` (a 429 on a PUT included),
    so its method allow-list cannot keep writes out; only the per-request retry budget can, and this
    policy sets it to `WRITE_RETRIES` for every method that is not a read, whatever the call asked.
    """

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        if request.http_request.method.upper() not in READ_METHODS:
            request.context.options["retry_total"] = WRITE_RETRIES
        return super().send(request)


def retry_policy() -> ArmRetryPolicy:
    """The retry policy of every ARM client (one instance per client; it holds no state)."""
    return ArmRetryPolicy(retry_total=READ_RETRIES, retry_backoff_max=READ_BACKOFF_MAX_SECONDS)


class StaticTokenCredential:
    """A fixed bearer token for the local ARM emulator, which accepts any token."""

    def __init__(self, token: str = "portcullis-local") -> None:  # noqa: S107 - not a secret
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def uses_environment_settings(environ: Any = None) -> bool:
    """Whether HTTP clients must read proxy / CA-bundle settings from the environment."""
    environ = os.environ if environ is None else environ
    names = {name.upper() for name in environ}
    return any(name in names for name in _ENVIRONMENT_SETTINGS)


@lru_cache(maxsize=1)
def _shared_session() -> Any:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.trust_env = uses_environment_settings()
    # azure-core retries with its own policy; the adapter must not retry underneath it.
    no_retries = Retry(total=False, redirect=False, raise_on_status=False)
    adapter = HTTPAdapter(pool_connections=16, pool_maxsize=CONNECTIONS_PER_HOST, max_retries=no_retries)
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session


@lru_cache(maxsize=8)
def shared_transport(connection_verify: bool | str = True) -> Any:
    """A transport over the process's one requests session (a connection pool per host, sized for
    the invocations that run at once), shared by every ARM and storage client. A client given a
    transport ignores its own `connection_verify`, so the transport carries it."""
    from azure.core.pipeline.transport import RequestsTransport

    return RequestsTransport(
        session=_shared_session(), session_owner=False, connection_verify=connection_verify
    )


def arm_credential(settings: Settings) -> TokenCredential:
    if settings.arm_credential is ArmCredentialKind.STATIC_TOKEN:
        return StaticTokenCredential()
    from azure.identity import DefaultAzureCredential  # lazy: heavy import, unused locally

    return DefaultAzureCredential(managed_identity_client_id=settings.storage.managed_identity_client_id)


ResponseHook = Callable[[Any], None]


def client_kwargs(settings: Settings, response_hook: ResponseHook | None = None) -> dict[str, Any]:
    """Keyword arguments every azure-mgmt-* client takes from our settings. `response_hook` sees
    every answer the client receives (azure-core's `raw_response_hook`, run by the client's
    CustomHookPolicy): the reconcile timer's ARM budget reads its headers there."""
    kwargs: dict[str, Any] = {
        "base_url": settings.arm_endpoint,
        "user_agent": USER_AGENT,
        "polling_interval": settings.arm_polling_interval_seconds,
        "retry_policy": retry_policy(),
        "credential_scopes": [f"{settings.arm_endpoint}/.default"]
        if settings.arm_endpoint != "https://management.azure.com"
        else ["https://management.azure.com/.default"],
    }
    if settings.arm_ca_bundle is not None:
        kwargs["connection_verify"] = str(settings.arm_ca_bundle)
    kwargs["transport"] = shared_transport(kwargs.get("connection_verify", True))
    if response_hook is not None:
        kwargs["raw_response_hook"] = response_hook
    return kwargs


@lru_cache(maxsize=8)
def _credential_for(settings: Settings) -> TokenCredential:
    return arm_credential(settings)


def network_client(
    subscription_id: str, settings: Settings | None = None, response_hook: ResponseHook | None = None
) -> Any:
    from azure.mgmt.network import NetworkManagementClient

    settings = settings or get_settings()
    return NetworkManagementClient(
        _credential_for(settings), subscription_id, **client_kwargs(settings, response_hook)
    )


def compute_client(
    subscription_id: str, settings: Settings | None = None, response_hook: ResponseHook | None = None
) -> Any:
    from azure.mgmt.compute import ComputeManagementClient

    settings = settings or get_settings()
    return ComputeManagementClient(
        _credential_for(settings), subscription_id, **client_kwargs(settings, response_hook)
    )


def authorization_client(subscription_id: str, settings: Settings | None = None) -> Any:
    from azure.mgmt.authorization import AuthorizationManagementClient

    settings = settings or get_settings()
    return AuthorizationManagementClient(
        _credential_for(settings), subscription_id, **client_kwargs(settings)
    )


def security_client(subscription_id: str, settings: Settings | None = None) -> Any:
    from azure.mgmt.security import SecurityCenter

    settings = settings or get_settings()
    return SecurityCenter(_credential_for(settings), subscription_id, **client_kwargs(settings))
