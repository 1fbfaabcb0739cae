"""The converge world (estate in the ARM emulator, grants on Azurite) for infra tests that check what
enforcement emits, e.g. the event the alert rule pages on."""

from tests.integration.conftest import world_factory

__all__ = ["world_factory"]
