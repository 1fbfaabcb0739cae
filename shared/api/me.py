"""GET /api/me: who the app takes the caller to be and the address it sees them from, so a client
(the `portcullis` CLI's `whoami` and `--source my-ip`, the web page) learns both from the one place
that decides them, instead of guessing its own public IP. Any signed-in caller may ask: it reads no
role assignment, storage or ARM."""

from __future__ import annotations

from typing import Literal

import azure.functions as func

from shared.answers import Me
from shared.api.http import ApiCall, endpoint, json_response
from shared.model import PrincipalSource

_AUTHENTICATION: dict[PrincipalSource, Literal["easyauth", "jwt"]] = {
    PrincipalSource.EASY_AUTH: "easyauth",
    PrincipalSource.JWT: "jwt",
}


@endpoint()
def get_me(call: ApiCall) -> func.HttpResponse:
    principal = call.principal
    return json_response(
        200,
        Me(
            objectId=principal.object_id,
            displayName=principal.display_name,
            tenantId=principal.tenant_id,
            groupIds=sorted(principal.group_ids),
            sourceAddress=call.caller_address,
            authentication=_AUTHENTICATION[principal.source],
        ),
    )
