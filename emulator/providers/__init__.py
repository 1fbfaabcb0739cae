"""Provider modules. Each has `register(engine: Engine) -> None`; listed here in load order.

A module listed here that does not exist yet is skipped, so providers can be added independently.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulator.engine import Engine

log = logging.getLogger("emulator.providers")

PROVIDER_MODULES = [
    "emulator.providers.arm",
    "emulator.providers.resources",
    "emulator.providers.network",
    "emulator.providers.compute",
    "emulator.providers.security",
    "emulator.providers.authorization",
]


def load_providers(engine: Engine) -> list[str]:
    loaded = []
    for name in PROVIDER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            log.warning("provider.missing module=%s", name)
            continue
        module.register(engine)
        loaded.append(name)
    return loaded
