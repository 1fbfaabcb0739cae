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
    """The real SDK client's hook policy: watch() makes every answer of that client observed."""
    from azure.core.credentials import AccessToken
    from azure.mgmt.network import NetworkManagementClient

    class Token:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            return AccessToken("t", 2**31)

    budget = ArmBudget(lambda s: None)
    client = budget.watch(NetworkManagementClient(Token(), "sub"), "sub")
    hook = client._config.custom_hook_policy._response_callback
    hook(answer(**{WRITE_HEADER: "7"}))
    assert budget.remaining("sub", "writes") == 7
