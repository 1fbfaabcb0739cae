"""The local stack's people and the application they sign in to: one table that the OpenID Connect
issuer (who may get a token), the sample estate's seed (who holds which role), the CLI's `login
--dev-user`, the web page's local sign-in and the demo all read, so a name means the same everywhere.

Everything here is for local development only and protects nothing: the password is printed by
`make up`. In Azure the people are Entra ID users and the application is the app registration that
Easy Auth is configured with.
"""

from __future__ import annotations

from dataclasses import dataclass

# The Portcullis API as an Entra ID application: tokens for it carry this audience (`aud`), and the
# function app in JWT mode accepts only those (PORTCULLIS_JWT_AUDIENCE).
APP_AUDIENCE = "api://portcullis-local"
# The public client (no secret) that the CLI and the web page sign in with, as the Azure CLI has its
# own well-known client id in Entra ID.
PUBLIC_CLIENT_ID = "c11c11c1-0000-4000-8000-000000000005"
# Every dev user's password (resource owner password grant, local only).
DEV_PASSWORD = "portcullis-dev"  # noqa: S105 - a local development credential, printed by `make up`
# The sample estate lives in a subscription of its own, apart from anything tests or the demo make.
SAMPLE_SUBSCRIPTION_ID = "5a001e00-0000-4000-8000-000000000000"
SAMPLE_RESOURCE_GROUP = "rg-portcullis-sample"


@dataclass(frozen=True)
class DevUser:
    """A person of the local stack. `role` says what the sample estate's seed grants them:
    "requester" may read the JIT policy and initiate on the sample VMs, "approver" approves requests
    for them, "admin" owns the sample resource group (writes policies, sees compliance), "none" has
    no role at all (to see what a user without rights sees)."""

    name: str
    object_id: str
    display_name: str
    role: str

    @property
    def username(self) -> str:
        return f"{self.name}@portcullis.local"


ALICE = DevUser("alice", "a11ce000-0000-4000-8000-000000000001", "Alice Requester", "requester")
BOB = DevUser("bob", "b0b00000-0000-4000-8000-000000000002", "Bob Approver", "approver")
ADMIN = DevUser("admin", "ad000000-0000-4000-8000-000000000003", "Ada Admin", "admin")
EVE = DevUser("eve", "e0e00000-0000-4000-8000-000000000004", "Eve Nobody", "none")
# A second approver, so that "two approvals by distinct people" can be shown (issue 13).
CAROL = DevUser("carol", "ca401000-0000-4000-8000-000000000006", "Carol Approver", "approver")
DEV_USERS: tuple[DevUser, ...] = (ALICE, BOB, ADMIN, EVE, CAROL)


def dev_user(name_or_username: str) -> DevUser | None:
    """The dev user called `alice` or `alice@portcullis.local` (case-insensitive), or None."""
    wanted = name_or_username.strip().lower()
    for user in DEV_USERS:
        if wanted in (user.name, user.username):
            return user
    return None
