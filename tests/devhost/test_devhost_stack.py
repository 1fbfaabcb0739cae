"""`start_stack()`: Azurite, the ARM emulator and the project's function app on devhost, together."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import localrig.stack
from localrig.stack import start_stack


def test_stack_runs_the_app_against_azurite_and_the_emulator_and_stops_every_child(tmp_path: Path) -> None:
    with start_stack(tmp_path / "stack") as stack:
        with urllib.request.urlopen(f"{stack.host_url}/admin/host/status", timeout=10) as response:
            assert json.load(response)["state"] == "Running"
        with urllib.request.urlopen(f"{stack.host_url}/admin/functions", timeout=10) as response:
            assert json.load(response), "the project's function app indexed no function"
        assert stack.env["AzureWebJobsStorage"] == stack.azurite.connection_string
        assert stack.env["PORTCULLIS_ARM_ENDPOINT"] == stack.emulator.base_url
        assert Path(stack.env["PORTCULLIS_ARM_CA_BUNDLE"]).is_file()
        # JWT mode by default: the app validates the local issuer's tokens, no Easy Auth stand-in
        assert "WEBSITE_AUTH_ENABLED" not in stack.env
        assert stack.env["PORTCULLIS_JWT_AUDIENCE"] == "api://portcullis-local"
        assert stack.dead_process() is None
        # Notifications go to the stack's webhook sink (signed webhook and the Event Grid stand-in).
        sink = stack.webhook_sink
        assert sink is not None and stack.env["PORTCULLIS_WEBHOOK_URLS"] == sink.webhook_url
        assert stack.env["PORTCULLIS_EVENTGRID_TOPIC_ENDPOINT"] == sink.eventgrid_endpoint
        with urllib.request.urlopen(f"{sink.url}/received", timeout=10) as response:
            assert json.load(response) == []
        children = stack.processes()
    assert not any(child.running() for child in children)


def test_missing_emulator_is_reported_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localrig.stack, "EMULATOR_ENTRY", tmp_path / "emulator" / "__main__.py")
    with pytest.raises(FileNotFoundError, match="ARM emulator"):
        start_stack(tmp_path / "stack")
