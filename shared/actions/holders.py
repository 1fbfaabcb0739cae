"""Who holds access now, across every VM (`GET /api/grants?active=true` without `vm`/`firewall`):
one call for the web page's "Policies & access" tab and `portcullis list`, instead of one per VM.

The open grants come from the expiry index (shared/grants.py: it holds only unrevoked grants, keyed
by end time), a page at a time, so the answer never reads closed grants of all time. Each grant is
shown under the same rule as `?vm=` (shared.actions.oversight: the requester, a reader of its JIT
policy, a writer of a firewall it has a rule on); the RBAC question is asked once per policy (or
firewall) per call, not once per grant.
"""

from __future__ import annotations

from shared.actions.oversight import Oversight
from shared.grants import OPEN_PAGE_SIZE, OPEN_SCAN_LIMIT, GrantPage, take_page
from shared.model import Grant, Principal
from shared.services import Services


def who_holds_access(
    services: Services,
    principal: Principal,
    cursor: str | None = None,
    *,
    limit: int = OPEN_PAGE_SIZE,
    scan_limit: int = OPEN_SCAN_LIMIT,
) -> GrantPage:
    """One page of the grants open now that `principal` may see, soonest end first. `cursor` is a
    previous page's cursor (checked by the caller with shared.grants.is_open_cursor)."""
    now = services.clock()
    oversight = Oversight(services, principal)

    def keep(grant: Grant) -> bool:
        return grant.is_open_at(now) and oversight.may_see(grant)

    rows = services.grants.open_grants(now, after=cursor)
    return take_page(rows, keep, limit=limit, scan_limit=scan_limit)
