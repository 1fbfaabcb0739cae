"""The OpenAPI 3.1 document for the whole API, served at /api/openapi.json.

Schemas of request bodies come from the same pydantic models the handlers validate with, so the
document cannot drift from what the code accepts. tests/integration/test_api_openapi.py checks every
route in function_app.py appears here.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func

from shared.api.http import ApiCall, endpoint, json_response
from shared.defender import API_VERSION, InitiateWire, PolicyWire
from shared.model import PortStatus, StatusReason, TargetState, TransportProtocol
from shared.queue_intake import QueuedEnvelope

_POLICY = (
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security"
    "/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}"
)
_ERROR = {"$ref": "#/components/schemas/Error"}


# Per target (NSG / firewall key) how far this grant's rule has got.
_TARGETS = {
    "type": "object",
    "additionalProperties": {"type": "string", "enum": [t.value for t in TargetState]},
}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _param(name: str, where: str = "path", description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string"},
        "description": description,
    }


def _api_version() -> dict[str, Any]:
    return {
        "name": "api-version",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "enum": [API_VERSION]},
    }


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        for code, text in [
            (400, "invalid input; `error.target` names the field"),
            (401, "not authenticated"),
            (403, "Azure RBAC does not allow it"),
            (404, "not found"),
            (413, "body too large"),
            (503, "RBAC or storage unavailable; nothing was changed"),
        ]
    }
    return {**ok, **errors}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _params(path: str) -> list[dict[str, Any]]:
    return [_param(part[1:-1]) for part in path.split("/") if part.startswith("{")]


def document() -> dict[str, Any]:
    policy = {"$ref": "#/components/schemas/JitNetworkAccessPolicy"}
    policy_list = {"type": "object", "properties": {"value": {"type": "array", "items": policy}}}
    request = {"$ref": "#/components/schemas/JitNetworkAccessRequest"}
    lists = [
        "/subscriptions/{subscriptionId}/providers/Microsoft.Security/jitNetworkAccessPolicies",
        "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}"
        "/jitNetworkAccessPolicies",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security"
        "/jitNetworkAccessPolicies",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security"
        "/locations/{ascLocation}/jitNetworkAccessPolicies",
    ]
    paths: dict[str, Any] = {
        _POLICY: {
            "parameters": [*_params(_POLICY), _api_version()],
            "get": {
                "operationId": "JitNetworkAccessPolicies_Get",
                "tags": ["Defender"],
                "responses": _responses({"200": _json("the policy and its request history", policy)}),
            },
            "put": {
                "operationId": "JitNetworkAccessPolicies_CreateOrUpdate",
                "tags": ["Defender"],
                "requestBody": {"required": True, "content": {"application/json": {"schema": policy}}},
                "responses": _responses({"200": _json("stored (created or replaced)", policy)}),
            },
            "delete": {
                "operationId": "JitNetworkAccessPolicies_Delete",
                "tags": ["Defender"],
                "responses": _responses(
                    {"200": {"description": "deleted"}, "204": {"description": "there was no such policy"}}
                ),
            },
        },
        _POLICY + "/initiate": {
            "parameters": [*_params(_POLICY), _api_version()],
            "post": {
                "operationId": "JitNetworkAccessPolicies_Initiate",
                "tags": ["Defender"],
                "description": "Ask for access. Without allowedSourceAddressPrefix the caller's own address "
                "(as the platform reports it) is used. Answers with Defender's request plus `requestId`; "
                "ports read `Initiating` until enforcement has opened every rule.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/JitNetworkAccessPolicyInitiateRequest"}
                        }
                    },
                },
                "responses": _responses(
                    {
                        "202": {
                            **_json("accepted and recorded; poll Location", request),
                            "headers": {
                                "Location": {
                                    "schema": {"type": "string"},
                                    "description": "/api/requests/{requestId}",
                                }
                            },
                        }
                    }
                ),
            },
        },
        "/requests/{requestId}": {
            "parameters": [_param("requestId")],
            "get": {
                "operationId": "Requests_Get",
                "tags": ["Records"],
                "description": "A request with per-port status, targets and connect details "
                "(requester, or anyone who may read the policy).",
                "responses": _responses({"200": _json("the request", request)}),
            },
            "delete": {
                "operationId": "Requests_Revoke",
                "tags": ["Records"],
                "description": "Early revoke by the requester or a policy admin (UserRequested).",
                "responses": _responses(
                    {
                        "202": {
                            **_json("revoked; rules close shortly", request),
                            "headers": {
                                "Location": {
                                    "schema": {"type": "string"},
                                    "description": "/api/requests/{requestId} (relative): poll until "
                                    "every port reads Revoked",
                                }
                            },
                        }
                    }
                ),
            },
        },
        "/grants": {
            "get": {
                "operationId": "Grants_List",
                "tags": ["Records"],
                "parameters": [
                    _param(
                        "vm",
                        "query",
                        "a VM's resource id: your own grants on it, and everyone's under policies you "
                        "may read or on firewalls you may write (give vm or firewall)",
                    ),
                    _param(
                        "firewall",
                        "query",
                        "an Azure Firewall id, or a Firewall Policy id: every grant with a rule on it, "
                        "if you may write it (give vm or firewall)",
                    ),
                    {
                        "name": "active",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "responses": _responses(
                    {
                        "200": _json(
                            "the grants you may see",
                            {
                                "type": "object",
                                "properties": {
                                    "value": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Grant"},
                                    }
                                },
                            },
                        )
                    }
                ),
            }
        },
        "/subscriptions/{subscriptionId}/importDefenderJitPolicies": {
            "parameters": [_param("subscriptionId")],
            "post": {
                "operationId": "Policies_ImportFromDefender",
                "tags": ["Records"],
                "description": "Adopt the subscription's Defender JIT policies the caller may write "
                "(validated as a PUT; Defender's request history is not copied). Policies the caller "
                "may not read are not named in the answer.",
                "responses": _responses(
                    {
                        "200": _json(
                            "what was adopted",
                            {
                                "type": "object",
                                "required": ["adopted", "unchanged", "skipped"],
                                "properties": {
                                    "adopted": {"type": "array", "items": {"type": "string"}},
                                    "unchanged": {"type": "array", "items": {"type": "string"}},
                                    "skipped": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["id", "reason"],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "reason": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        ),
                        "502": _json("Defender's policies could not be read; nothing was changed", _ERROR),
                    }
                ),
            },
        },
        "/compliance": {
            "get": {
                "operationId": "Compliance_List",
                "tags": ["Records"],
                "description": "Findings enforcement reports but must not fix (a foreign rule opening a "
                "protected port ahead of our Deny, a full priority band).",
                "responses": _responses(
                    {
                        "200": _json(
                            "current findings",
                            {
                                "type": "object",
                                "required": ["value", "count"],
                                "properties": {
                                    "value": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/ComplianceFinding"},
                                    },
                                    "count": {"type": "integer"},
                                },
                            },
                        )
                    }
                ),
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "OpenApi_Get",
                "tags": ["Meta"],
                "security": [],
                "responses": {"200": {"description": "this document"}},
            }
        },
        "/health": {
            "get": {
                "operationId": "Health_Get",
                "tags": ["Meta"],
                "security": [],
                "responses": {"200": {"description": "the app is up"}},
            }
        },
    }
    for path in lists:
        paths[path] = {
            "parameters": [*_params(path), _api_version()],
            "get": {
                "operationId": "JitNetworkAccessPolicies_List" + str(lists.index(path)),
                "tags": ["Defender"],
                "responses": _responses({"200": _json("the policies the caller may read", policy_list)}),
            },
        }
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "target": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "object"}},
                    },
                }
            },
        },
        "JitNetworkAccessPolicy": PolicyWire.model_json_schema(ref_template="#/components/schemas/{model}"),
        "JitNetworkAccessPolicyInitiateRequest": InitiateWire.model_json_schema(
            ref_template="#/components/schemas/{model}"
        ),
        "QueuedAccessRequest": {
            "description": "A message on the jit-requests queue (base64 text): the initiate body "
            "(virtualMachines, justification) plus these fields.",
            **QueuedEnvelope.model_json_schema(ref_template="#/components/schemas/{model}"),
        },
        "JitNetworkAccessRequest": {
            "type": "object",
            "required": ["virtualMachines", "startTimeUtc", "requestor"],
            "properties": {
                "requestId": {"type": "string"},
                "policyId": {"type": "string"},
                "virtualMachines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "ports"],
                        "properties": {
                            "id": {"type": "string"},
                            "ports": {"type": "array", "items": {"$ref": "#/components/schemas/RequestPort"}},
                        },
                    },
                },
                "startTimeUtc": {"type": "string", "format": "date-time"},
                "requestor": {"type": "string"},
                "requestorObjectId": {"type": "string"},
                "justification": _nullable("string"),
                "ticketId": _nullable("string"),
            },
        },
        "RequestPort": {
            "type": "object",
            "required": ["number", "endTimeUtc", "status", "statusReason"],
            "properties": {
                "number": {"type": "integer"},
                "allowedSourceAddressPrefix": {"type": "string"},
                "allowedSourceAddressPrefixes": {"type": "array", "items": {"type": "string"}},
                "endTimeUtc": {"type": "string", "format": "date-time"},
                "status": {"type": "string", "enum": [s.value for s in PortStatus]},
                "statusReason": {"type": "string", "enum": [r.value for r in StatusReason]},
                "mappedPort": {"type": "integer"},
                "grantId": {"type": "string"},
                "protocol": {"type": "string", "enum": [p.value for p in TransportProtocol]},
                "connectAddress": _nullable("string"),
                "connectPort": {"type": "integer"},
                "connection": {
                    "description": "How to connect, once enforcement knows the address (null before).",
                    "anyOf": [{"$ref": "#/components/schemas/ConnectionDetails"}, {"type": "null"}],
                },
                "targets": _TARGETS,
            },
        },
        "ConnectionDetails": {
            "type": "object",
            "required": ["address", "port", "ssh", "rdp"],
            "properties": {
                "address": {
                    "type": "string",
                    "description": "The VM's public IP, or the public IP of the firewall in front of it.",
                },
                "port": {
                    "type": "integer",
                    "description": "The port to connect to (behind a firewall: the mapped port).",
                },
                "ssh": {"type": "string", "examples": ["ssh -p 50022 <user>@203.0.113.10"]},
                "rdp": {"type": "string", "examples": ["mstsc /v:203.0.113.10:50022"]},
            },
        },
        "Grant": {
            "type": "object",
            "required": ["grantId", "requestId", "vmId", "port", "status", "statusReason", "active"],
            "properties": {
                "grantId": {"type": "string"},
                "requestId": {"type": "string"},
                "policyId": {"type": "string"},
                "vmId": {"type": "string"},
                "port": {"type": "integer"},
                "protocol": {"type": "string", "enum": [p.value for p in TransportProtocol]},
                "sourceAddressPrefixes": {"type": "array", "items": {"type": "string"}},
                "startTimeUtc": {"type": "string", "format": "date-time"},
                "endTimeUtc": {"type": "string", "format": "date-time"},
                "requestor": {
                    "type": "object",
                    "properties": {"objectId": {"type": "string"}, "name": {"type": "string"}},
                },
                "justification": _nullable("string"),
                "ticketId": _nullable("string"),
                "status": {"type": "string", "enum": [s.value for s in PortStatus]},
                "statusReason": {"type": "string", "enum": [r.value for r in StatusReason]},
                "active": {"type": "boolean"},
                "targets": _TARGETS,
                "mappedPort": _nullable("integer"),
                "connectAddress": _nullable("string"),
                "connectPort": {"type": "integer"},
            },
        },
        "ComplianceFinding": {
            "type": "object",
            "properties": {
                "kind": {"type": "string"},
                "targetKind": {"type": "string"},
                "targetId": {"type": "string"},
                "ruleName": {"type": "string"},
                "virtualMachineId": {"type": "string"},
                "port": {"type": "integer"},
                "detail": {"type": "string"},
                "firstSeen": {"type": "string", "format": "date-time"},
                "lastSeen": {"type": "string", "format": "date-time"},
            },
        },
    }
    for model_schema in list(schemas.values()):
        schemas.update(model_schema.pop("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Portcullis",
            "version": "1.0.0",
            "description": "Just-in-time VM access: Defender-compatible JIT API (api-version "
            f"{API_VERSION}) and Portcullis' records.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"easyAuth": []}, {"bearer": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Entra ID token, validated by the app when Easy Auth is off",
                },
                "easyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-MS-CLIENT-PRINCIPAL",
                    "description": "set by App Service Authentication (Easy Auth); trusted only "
                    "when WEBSITE_AUTH_ENABLED is true",
                },
            },
        },
        "paths": paths,
    }


@endpoint(authenticate=False)
def get_openapi(call: ApiCall) -> func.HttpResponse:
    return json_response(200, document())
