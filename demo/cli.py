"""The `portcullis` command line as the demo's requester uses it: the real console script (installed
by `make venv` from ./cli) in a process of its own, with a config directory of the demo's, its
command and output printed as a person would see them in their terminal."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from localrig.devusers import DevUser
from localrig.emulator_client import EmulatorClient
from localrig.estates.ids import ResourceGroupIds
from localrig.estates.roles import READER_ROLE, assign_role
from localrig.estates.snapshot import DemoStepError

PORTCULLIS = Path(sys.executable).parent / "portcullis"


class Cli:
    def __init__(self, config_dir: Path, say: Any) -> None:
        if not PORTCULLIS.exists():
            raise DemoStepError(f"{PORTCULLIS} is missing: `make venv` installs the CLI (-e ./cli)")
        self.config_dir = config_dir
        self._say = say

    def run(self, *args: str, show: bool = True) -> str:
        """`portcullis ARGS`: its stdout; DemoStepError with its stderr when it exits non-zero."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PORTCULLIS_")}
        env["PORTCULLIS_CONFIG_DIR"] = str(self.config_dir)
        if show:
            self._say(f"   $ portcullis {shlex.join(args)}")
        done = subprocess.run(  # noqa: S603 - our own console script
            [str(PORTCULLIS), *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        if show:
            for line in (done.stderr + done.stdout).splitlines():
                self._say(f"     {line}")
        if done.returncode != 0:
            raise DemoStepError(
                f"portcullis {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json", show=False))


def let_read_policies(arm: EmulatorClient, estate: ResourceGroupIds, user: DevUser) -> None:
    """Reader on the estate's resource group: the CLI finds the VMs a person may request in the JIT
    policies they can read (GET /api/policies); the demo's requester role sits on the VMs alone."""
    from azure.mgmt.authorization import AuthorizationManagementClient

    auth = arm.client(AuthorizationManagementClient, estate.subscription_id)
    assign_role(auth, estate.subscription_id, estate.scope, READER_ROLE, user.object_id)
