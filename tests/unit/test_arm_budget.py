"""Pacing on ARM's remaining-budget headers (shared/enforcement/budget.py), with a recorded sleep."""

from __future__ import annotations

from types import SimpleNamespace

from shared.enforcement.budget import READ_HEADER, WRITE_HEADER, ArmBudget


def answer(**headers: str) -> SimpleNamespace:
    return SimpleNamespace(http_response=SimpleNamespace(headers=headers))


def test_no_pause_while_the_bucket_is_well_above_the_reserve() -> None:
    sleeps: list[float] = []
    budget = ArmBudget(sleeps.append, read_reserve=100)
    assert budget.pace("SUB") == 0.0  # nothing observed yet
    budget.observe("sub")(answer(**{READ_HEADER: "240"}))
    assert budget.remaining("Sub") == 240
    assert budget.pace("sub") == 0.0 and sleeps == []


def test_pauses_until_the_reserve_has_refilled() -> None:
    sleeps: list[float] = []
    budget = ArmBudget(sleeps.append, read_reserve=100, write_reserve=80)
    hook = budget.observe("sub")
    hook(answer(**{READ_HEADER: "50", WRITE_HEADER: "60"}))
    assert budget.pace("sub", "reads") == 2.0  # (100 - 50) tokens at 25/s
    assert budget.pace("sub", "writes") == 2.0  # (80 - 60) tokens at 10/s
    assert sleeps == [2.0, 2.0]
    assert budget.pace("sub", "reads") == 0.0  # refilled as ARM promises, until the next answer


def test_unparseable_headers_are_ignored() -> None:
    budget = ArmBudget(lambda s: None)
    budget.observe("sub")(answer(**{READ_HEADER: "many"}))
    assert budget.remaining("sub") is None


def test_a_client_reports_every_answer_through_its_hook() -> None:
    """The real SDK client with the keyword arguments shared/azure_clients.py gives every client
    (the budget's hook among them): an answer that comes through its pipeline is observed."""
    import io

    import requests
    import urllib3
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.network import NetworkManagementClient

    from shared.azure_clients import StaticTokenCredential, client_kwargs
    from shared.settings import load_settings

    class Answers(requests.adapters.BaseAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
            body = b'{"name": "nsg"}'
            raw = urllib3.HTTPResponse(
                body=io.BytesIO(body),
                headers={WRITE_HEADER: "7", "content-type": "application/json"},
                status=200,
                preload_content=False,
            )
            return requests.adapters.HTTPAdapter().build_response(request, raw)

        def close(self) -> None: ...

    session = requests.Session()
    session.mount("https://", Answers())
    budget = ArmBudget(lambda s: None)
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "PORTCULLIS_ARM_ENDPOINT": "https://arm.test",
            "PORTCULLIS_ARM_CREDENTIAL": "static-token",
        }
    )
    kwargs = {
        **client_kwargs(settings, budget.observe("sub")),
        "transport": RequestsTransport(session=session),
    }
    client = NetworkManagementClient(StaticTokenCredential(), "sub", **kwargs)
    assert client.network_security_groups.get("rg", "nsg").name == "nsg"
    assert budget.remaining("sub", "writes") == 7
