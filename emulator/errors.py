"""ARM's error answers: `{"error": {"code", "message", "target"?, "details"?}}` with a status."""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    """Raise anywhere in a handler or hook; the engine turns it into ARM's error answer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(code: str, message: str, target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target=target)


def invalid(message: str, target: str | None = None) -> ArmError:
    """The generic 400 Network and other providers use for a field that breaks a rule."""
    return ArmError(400, "InvalidRequestFormat", message, target=target)


def invalid_resource_reference(ref_id: str, referrer: str, target: str) -> ArmError:
    """A body references a resource that does not exist (or lives in another region)."""
    return ArmError(
        400,
        "InvalidResourceReference",
        f"Resource {ref_id} referenced by resource {referrer} was not found. Please make sure that the "
        "referenced resource exists, and that both resources are in the same region.",
        target=target,
    )


def resource_not_found(resource_type: str, name: str, resource_group: str | None) -> ArmError:
    where = f" under resource group '{resource_group}'" if resource_group else ""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}'{where} was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        headers={"x-ms-failure-cause": "gateway"},
    )


def resource_group_not_found(resource_group: str) -> ArmError:
    return ArmError(
        404,
        "ResourceGroupNotFound",
        f"Resource group '{resource_group}' could not be found.",
        headers={"x-ms-failure-cause": "gateway"},
    )


def precondition_failed(message: str = "") -> ArmError:
    return ArmError(
        412,
        "PreconditionFailed",
        message or "The condition specified using HTTP conditional header(s) is not met.",
    )


def another_operation_in_progress(resource_id: str, operation_id: str) -> ArmError:
    return ArmError(
        409,
        "AnotherOperationInProgress",
        f"Another operation on this or dependent resource is in progress. To retrieve status of the "
        f"operation use uri: {operation_id}. Resource: {resource_id}",
        details=[],
    )


def retryable_another_operation(resource_id: str, retry_after: int) -> ArmError:
    return ArmError(
        429,
        "RetryableErrorDueToAnotherOperation",
        f"Operation could not be completed because another operation on this or dependent resource "
        f"is in progress. The operation can be retried in {retry_after} seconds. Resource: {resource_id}",
        headers={"Retry-After": str(retry_after)},
    )
