"""The dev users' rights as role assignments in the emulator's Microsoft.Authorization, where the app
reads them (its authorizer asks ARM, as it does in Azure).

`define_role` and `assign_role` are the one way the demo, the tests and the benchmarks write them;
two sets of them are kept here:
- `grant_roles` (the demo, the end-to-end tests): a fresh custom role per call, `admin` Owner on the
  estate's resource group and Reader on the subscription, `alice` the requester role on three VMs;
- `assign_sample_roles` (`make up`'s seed): fixed names derived from the scope, so a second `make up`
  over the same data writes the same assignments again instead of failing; see `sample_assignments`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from localrig.devusers import ADMIN, ALICE, BOB, DevUser
from localrig.emulator_client import EmulatorClient
from localrig.estates.ids import ResourceGroupIds

if TYPE_CHECKING:
    from azure.mgmt.authorization import AuthorizationManagementClient

OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"  # built-in Owner
READER_ROLE = "acdd72a7-3385-48ef-bd42-f606fba81ae7"  # built-in Reader
# What a JIT requester may do: read the policies and the VMs (and their network, for the connection
# details), and initiate access.
REQUESTER_ACTIONS = (
    "Microsoft.Security/locations/jitNetworkAccessPolicies/initiate/action",
    "Microsoft.Security/locations/jitNetworkAccessPolicies/read",
    "Microsoft.Security/locations/jitNetworkAccessPolicies/*/read",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Network/networkInterfaces/*/read",
    "Microsoft.Network/publicIPAddresses/read",
)
# The sample's custom role: one fixed id and name, so seeding it twice writes the same definition.
SAMPLE_REQUESTER_ROLE = str(uuid.uuid5(uuid.NAMESPACE_URL, "portcullis:sample:jit-requester"))
SAMPLE_REQUESTER_ROLE_NAME = "Portcullis sample JIT requester"


@dataclass(frozen=True)
class Assignment:
    scope: str
    role: str  # a role definition's GUID
    user: DevUser

    @property
    def name(self) -> str:
        """A stable assignment name (a GUID): the same scope, role and person give the same name, so a
        repeated PUT is an update of the same assignment, not ARM's 409 RoleAssignmentExists."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.scope.lower()}|{self.role}|{self.user.object_id}"))


def sample_assignments(estate: ResourceGroupIds) -> list[Assignment]:
    """Who holds what on the sample estate: alice (requester) the requester role on its resource
    group; bob (the approver of vm-db in the seeded policy, seed.py `APPROVAL`) Reader (what the approval
    check reads at decision time) and the requester role there; admin Owner of the
    sample subscription (writes policies, sees compliance); eve nothing."""
    subscription = f"/subscriptions/{estate.subscription_id}"
    return [
        Assignment(estate.scope, SAMPLE_REQUESTER_ROLE, ALICE),
        Assignment(estate.scope, READER_ROLE, BOB),
        Assignment(estate.scope, SAMPLE_REQUESTER_ROLE, BOB),
        Assignment(subscription, OWNER_ROLE, ADMIN),
    ]


def _authorization(arm: EmulatorClient, subscription_id: str) -> AuthorizationManagementClient:
    from azure.mgmt.authorization import AuthorizationManagementClient

    return arm.client(AuthorizationManagementClient, subscription_id)


def define_role(
    auth: AuthorizationManagementClient,
    subscription_id: str,
    role: str,
    name: str,
    actions: Sequence[str],
    not_actions: Sequence[str] = (),
) -> None:
    """Create (or rewrite) the custom role `role` (a GUID), assignable in the subscription."""
    from azure.mgmt.authorization.v2022_04_01.models import Permission, RoleDefinition

    subscription = f"/subscriptions/{subscription_id}"
    auth.role_definitions.create_or_update(
        subscription,
        role,
        RoleDefinition(
            role_name=name,
            permissions=[Permission(actions=list(actions), not_actions=list(not_actions))],
            assignable_scopes=[subscription],
        ),
    )


def assign_role(
    auth: AuthorizationManagementClient,
    subscription_id: str,
    scope: str,
    role: str,
    principal_id: str,
    *,
    name: str | None = None,
    principal_type: str = "User",
) -> None:
    """Assign the role `role` (a GUID, built-in or custom) at `scope`; `name` defaults to a new GUID."""
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

    definition = f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/"
    auth.role_assignments.create(
        scope,
        name or str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=definition + role, principal_id=principal_id, principal_type=principal_type
        ),
    )


def assign_sample_roles(arm: EmulatorClient, estate: ResourceGroupIds) -> list[Assignment]:
    """Write the sample's role definition and assignments (idempotent: stable ids throughout)."""
    auth = _authorization(arm, estate.subscription_id)
    sub = estate.subscription_id
    define_role(auth, sub, SAMPLE_REQUESTER_ROLE, SAMPLE_REQUESTER_ROLE_NAME, REQUESTER_ACTIONS)
    assignments = sample_assignments(estate)
    for a in assignments:
        assign_role(auth, sub, a.scope, a.role, a.user.object_id, name=a.name)
    return assignments


def grant_roles(arm: EmulatorClient, estate: ResourceGroupIds) -> tuple[DevUser, DevUser]:
    """The dev users `admin` (Owner on the resource group, Reader on the subscription) and `alice`,
    allowed to initiate JIT access on the estate's VMs vm-web, vm-app and vm-ops, as role assignments
    in the emulator's Microsoft.Authorization (a fresh custom role per call: estates side by side)."""
    auth = _authorization(arm, arm.subscription_id)
    subscription = f"/subscriptions/{arm.subscription_id}"
    role = str(uuid.uuid4())
    define_role(auth, arm.subscription_id, role, f"JIT requester {role[:8]}", REQUESTER_ACTIONS)
    assignments = [Assignment(estate.scope, OWNER_ROLE, ADMIN)]
    # Compliance findings are shown to those who may read the subscription's JIT policies.
    assignments.append(Assignment(subscription, READER_ROLE, ADMIN))
    assignments += [Assignment(estate.vm_id(vm), role, ALICE) for vm in ("vm-web", "vm-app", "vm-ops")]
    for a in assignments:
        assign_role(auth, arm.subscription_id, a.scope, a.role, a.user.object_id)
    return ADMIN, ALICE
