"""`make up`'s sample estate: the sample's VMs, NSGs and firewalls (`sample.Estate`) in a subscription
of their own (localrig/devusers.py `SAMPLE_SUBSCRIPTION_ID`), its JIT policy, and the dev users' roles,
so `portcullis login --dev-user alice` then `portcullis vm list` shows VMs on a newcomer's first try.

Each part is written only when missing, so a second `make up` over the same data directory neither
fails nor undoes what happened since (rules the app laid, a policy someone edited):
- the resources through the emulator's admin seed, when the estate's last resource is absent (the
  seed applies items in order, so the last one present means all are);
- the role definition and assignments with stable ids (a repeated PUT is an update);
- the policy through the app's own API as admin (so it passes the same validation and confinement as
  anyone's), when the app has no policy of that name yet. It puts an approval rule on vm-db (bob
  approves, `APPROVAL`), so a newcomer can try approvals: alice asks for vm-db, it waits (Pending),
  bob finds it with `GET /api/requests?status=Pending&approver=me` and approves. Bob's Reader on the
  resource group (roles.py `sample_assignments`) is what the approval check reads at decision time.

The emulator needs nothing created for the subscription: any subscription id exists there, and one
holding a resource group is listed by `GET /subscriptions` (what `az account list` reads).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localrig.appclient import API_VERSION, ApiError, AppClient
from localrig.devusers import ADMIN, BOB
from localrig.emulator_client import EmulatorClient
from localrig.estates.roles import Assignment, assign_sample_roles
from localrig.estates.sample import Estate, sample_estate

if TYPE_CHECKING:
    from localrig.stack import Stack

# `PORTCULLIS_LOCAL_SEED=0 make up` (or `python -m localrig up --no-seed`) starts an empty stack.
SEED_VARIABLE = "PORTCULLIS_LOCAL_SEED"
_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")
POLICY_NAME = "default"
# The seeded policy's approval rule (README "Approvals, extensions and break-glass"): on `APPROVAL_VM`
# bob must approve; a request nobody decides lapses after an hour.
APPROVAL_VM = Estate.vm_db
APPROVAL: dict[str, object] = {"approvers": [BOB.object_id], "required": 1, "pendingTimeout": "PT1H"}


def seeded_policy_body(estate: Estate) -> dict[str, Any]:
    """The policy `make up` writes: the sample's, with bob's approval on vm-db."""
    return estate.policy_body(approval_on={APPROVAL_VM: APPROVAL})


def seed_wanted(no_seed: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """False when `--no-seed` was given or PORTCULLIS_LOCAL_SEED says off (0/false/no/off); unset or
    empty means on. ValueError naming the variable and its values for anything else."""
    value = (os.environ if env is None else env).get(SEED_VARIABLE, "").strip().lower()
    if value and value not in _ON + _OFF:
        raise ValueError(
            f"{SEED_VARIABLE}={value!r} is not a switch: use 1 or 0 (true/false, yes/no, on/off)"
        )
    return not no_seed and value not in _OFF


@dataclass(frozen=True)
class SeedReport:
    estate: Estate
    resources_written: int  # 0 when the estate was already there
    policy_written: bool
    assignments: list[Assignment]
    seconds: float

    def lines(self) -> list[str]:
        """What `make up` prints about the sample."""
        estate = self.estate
        parts = [
            f"{self.resources_written} resources" if self.resources_written else "resources already there"
        ]
        parts.append("policy written" if self.policy_written else "policy already there")
        who = ", ".join(sorted({f"{a.user.name}" for a in self.assignments}))
        return [
            f"Sample estate   subscription {estate.subscription_id}, resource group {estate.resource_group} "
            f"({'; '.join(parts)}; roles for {who}; {self.seconds:.1f} s)",
            f"Sample VMs      {', '.join(estate.vm_names)}  (JIT policy {POLICY_NAME}: SSH 22 on all, "
            f"RDP 3389 on {estate.vm_web}; {APPROVAL_VM} needs {BOB.name}'s approval)",
        ]


def seed_sample(stack: Stack, estate: Estate | None = None) -> SeedReport:
    """Write whatever of the sample is missing (see the module docstring); ApiError or AssertionError
    (from the emulator's admin calls) when a part is refused."""
    estate = estate or sample_estate()
    started = time.perf_counter()
    arm = EmulatorClient(stack.emulator.base_url, stack.emulator.ca_file, estate.subscription_id)
    items = estate.resources()
    status, answer = arm.admin("GET", f"/_emulator/resources{items[-1]['id']}")
    written = 0
    if status == 404:
        arm.seed(items)
        written = len(items)
    elif status >= 400:
        raise AssertionError(f"the emulator answered {status} for the sample estate: {answer}")
    assignments = assign_sample_roles(arm, estate)
    admin = AppClient(stack.api_url, ADMIN, stack.headers_for)
    path = f"{AppClient.policy_path(estate, POLICY_NAME)}?api-version={API_VERSION}"
    status, answer = admin.call("GET", path)
    if status == 404:
        admin.ok("PUT", path, seeded_policy_body(estate))
    elif status >= 400:
        raise ApiError(status, answer)
    return SeedReport(estate, written, status == 404, assignments, round(time.perf_counter() - started, 2))
