"""Structured events with stable names; OpenTelemetry only when App Insights is configured."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from shared import enforcement, observability
from shared.events import EventId
from shared.model import TargetRef, TargetState
from shared.observability import configure_telemetry, event_fields, log_event
from tests.infra import bicep
from tests.integration.conftest import World

REVOKE_FAILING = EventId.REVOKE_FAILING


def test_an_event_carries_its_name_and_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="portcullis"):
        log_event(REVOKE_FAILING, logging.ERROR, target="/subscriptions/s/nsg", attempts=5, ports=[22])
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.name == "portcullis"
    assert record.getMessage().startswith("revoke.failing {")
    assert json.loads(record.getMessage().split(" ", 1)[1]) == {
        "attempts": 5,
        "ports": [22],
        "target": "/subscriptions/s/nsg",
    }
    assert record.event == "revoke.failing"  # type: ignore[attr-defined]
    assert record.attempts == 5  # type: ignore[attr-defined]
    assert record.ports == "[22]"  # type: ignore[attr-defined]  # exporters take primitives only


def test_level_names_are_accepted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="portcullis"):
        log_event("grant.created", "warning", grant_id="g1")
    assert caplog.records[0].levelno == logging.WARNING


def test_fields_that_clash_with_log_record_attributes_are_renamed() -> None:
    attributes = event_fields("grant.created", {"name": "x", "message": "m", "event": "e", "ok": True})
    assert attributes == {
        "event": "grant.created",
        "field_name": "x",
        "field_message": "m",
        "field_event": "e",
        "ok": True,
    }
    logging.getLogger("portcullis").makeRecord(
        "portcullis", logging.INFO, "f", 1, "m", None, None, extra=attributes
    )


@pytest.mark.parametrize("name", ["Revoke.Failing", "revoke", "revoke failing", "revoke.", ".failing"])
def test_malformed_event_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="event name"):
        log_event(name)


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        log_event("grant.created", "loud")


def test_without_a_connection_string_telemetry_is_off_and_not_imported() -> None:
    assert configure_telemetry({}) is False
    code = (
        "import sys\nfrom shared.observability import configure_telemetry\n"
        "assert configure_telemetry({}) is False\n"
        "print(any(m.startswith(('azure.monitor', 'opentelemetry')) for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=bicep.ROOT, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_with_a_connection_string_logs_go_to_the_azure_monitor_exporter() -> None:
    # A separate process: the distro installs global providers. The ingestion endpoint is a closed
    # local port, so nothing leaves the machine.
    code = (
        "import logging\nfrom shared import observability as o\n"
        "env = {'APPLICATIONINSIGHTS_CONNECTION_STRING': "
        "'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/',"
        " 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING':"
        " 'ClientId=11111111-1111-1111-1111-111111111111;Authorization=AAD'}\n"
        "assert o.configure_telemetry(env) is True\nassert o.configure_telemetry(env) is True\n"
        "handlers = logging.getLogger('portcullis').handlers\n"
        "print(sorted(type(h).__name__ for h in handlers))\n"
    )
    env = {"OTEL_BSP_SCHEDULE_DELAY": "1", "AZURE_MONITOR_DISABLE_OFFLINE_STORAGE": "true"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=bicep.ROOT,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LoggingHandler" in out.stdout


def test_aad_client_id_is_read_from_the_authentication_string() -> None:
    assert observability._aad_client_id("ClientId=abc;Authorization=AAD") == "abc"
    assert observability._aad_client_id("Authorization=AAD") is None
    assert observability._aad_client_id("ClientId=abc") is None
    assert observability._aad_client_id(None) is None


def test_a_revoke_that_keeps_failing_pages_someone(
    world_factory: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    # The alert rule in infra/ matches this event: an expired grant whose rule ARM keeps refusing to
    # remove must log it at ERROR once converge's bounded retries are spent.
    world = world_factory()
    grant = world.request(world.estate.vm_db, 22, minutes=1)
    enforcement.handle_grant(world.deps, grant.grant_id)
    opened = world.store.get(grant.grant_id)
    assert opened is not None and set(opened.targets.values()) == {TargetState.APPLIED}
    (target,) = opened.targets
    world.clock.advance(120)
    world.emulator.add_fault(
        method="PUT",
        path=f"(?i)/resourceGroups/{world.estate.resource_group}/.*networkSecurityGroups",
        status=409,
        code="AnotherOperationInProgress",
        count=None,
    )
    with caplog.at_level(logging.INFO, logger="portcullis"):
        assert enforcement.sweep_expired(world.deps) == [TargetRef.from_key(target)]
    failing = [r for r in caplog.records if getattr(r, "event", None) == REVOKE_FAILING]
    assert len(failing) == 1, [r.getMessage() for r in caplog.records]
    (record,) = failing
    assert record.levelno == logging.ERROR
    fields = json.loads(record.getMessage().split(" ", 1)[1])
    assert fields["target"] == target
    assert fields["grant_ids"] == [grant.grant_id]
    assert fields["attempts"] == enforcement.MAX_WRITE_ATTEMPTS
    assert "409 AnotherOperationInProgress" in fields["error"]

    # Once ARM accepts again the rule goes and nothing more pages.
    world.emulator.clear_faults()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="portcullis"):
        enforcement.sweep_expired(world.deps)
    assert not [r for r in caplog.records if getattr(r, "event", None) == REVOKE_FAILING]
    closed = world.store.get(grant.grant_id)
    assert closed is not None and set(closed.targets.values()) == {TargetState.REMOVED}


def test_an_open_grant_the_target_refuses_is_not_a_failing_revoke(
    world_factory: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    world = world_factory()
    grant = world.request(world.estate.vm_db, 22, minutes=10)
    world.emulator.add_fault(
        method="PUT",
        path=f"(?i)/resourceGroups/{world.estate.resource_group}/.*networkSecurityGroups",
        status=409,
        code="AnotherOperationInProgress",
        count=None,
    )
    with caplog.at_level(logging.INFO, logger="portcullis"), pytest.raises(enforcement.TargetWriteError):
        enforcement.handle_grant(world.deps, grant.grant_id)
    assert not [r for r in caplog.records if getattr(r, "event", None) == REVOKE_FAILING]
