"""Fixtures shared by every test package: real Azurite and the real ARM emulator, started once per
session on free ports, each test isolated by its own table prefix / resource names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localrig.azurite import Azurite, start_azurite
from localrig.emulator import start_emulator
from localrig.emulator_client import EmulatorClient
from shared.settings import Settings, load_settings

# Records every ARM request the emulators see, for infra's role-coverage check (tests/arm_calls.py).
pytest_plugins = ("tests.arm_calls",)

SHARED_DIR = Path(
    os.environ.get("PORTCULLIS_SHARED_DIR", Path(__file__).resolve().parent.parent.parent / "shared")
)


def shared_dir_or_skip() -> Path:
    """../shared beside the repo (only on the team's machines and CI); skip when absent."""
    if not (SHARED_DIR / "azure-rest-specs").is_dir():
        pytest.skip(f"reference material not found at {SHARED_DIR} (set PORTCULLIS_SHARED_DIR)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    instance = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def storage_env(azurite: Azurite) -> dict[str, str]:
    """Environment for the app against Azurite, with a table prefix unique to this test."""
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "PORTCULLIS_TABLE_PREFIX": "t" + uuid.uuid4().hex[:12],
    }


@pytest.fixture
def storage_settings(storage_env: dict[str, str]) -> Settings:
    return load_settings(storage_env)


# Long-running operations finish at once in tests; a test that needs them slow uses
# `arm_emulator.lro_seconds({...})`. ARM throttling (on by default in `python -m emulator`) is off so
# the suite's bursts never wait on a bucket; tests of throttling turn it on with PUT /_emulator/throttle.
_FAST_LRO = [
    "--throttle",
    "off",
    "--lro-seconds",
    "default=0",
    "--lro-seconds",
    "Microsoft.Network/azureFirewalls=0",
    "--lro-seconds",
    "Microsoft.Network/firewallPolicies=0",
    "--lro-seconds",
    "Microsoft.Network/firewallPolicies/ruleCollectionGroups=0",
]


@pytest.fixture(scope="session")
def arm_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorClient]:
    """The ARM emulator, once per session. Use `arm_emulator.client(NetworkManagementClient)` and a
    fresh `arm_emulator.new_resource_group()` per test; see emulator/PROVIDERS.md."""
    instance = start_emulator(tmp_path_factory.mktemp("arm-emulator"), extra_args=_FAST_LRO)
    try:
        yield EmulatorClient(instance.base_url, instance.ca_file)
    finally:
        instance.stop()


# Fixtures that start a process: a test that asks for one is not a unit test, whatever its marker.
_PROCESS_FIXTURES = frozenset({"azurite", "arm_emulator", "storage_env", "storage_settings"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything in tests/unit/ is a unit test (`-m unit`, `make test-unit`); modules elsewhere opt
    in with `pytestmark = pytest.mark.unit`. A unit test may not start Azurite or the emulator."""
    unit_dir = Path(__file__).resolve().parent / "unit"
    for item in items:
        if unit_dir in item.path.parents:
            item.add_marker(pytest.mark.unit)
        if item.get_closest_marker("unit") is not None:
            started = _PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if started:
                raise pytest.UsageError(f"{item.nodeid} is marked unit but uses {sorted(started)}")
