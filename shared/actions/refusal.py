"""A refused action: the HTTP status, a stable code, the field at fault and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.model import DomainError

# The status of a refusal because something the decision needs (RBAC) cannot be read.
UNAVAILABLE = 503


@dataclass
class Refusal(Exception):  # noqa: N818 - a refusal is an answer, not a fault
    status: int
    code: str
    message: str
    target: str | None = None
    details: list[DomainError] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")

    @classmethod
    def invalid(cls, error: DomainError) -> Refusal:
        return cls(400, error.code, f"{error.field}: {error.reason}", error.field, [error])

    @classmethod
    def all_invalid(cls, errors: list[DomainError]) -> Refusal:
        first = errors[0]
        message = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        return cls(400, first.code, message, first.field, list(errors))

    @classmethod
    def forbidden(cls, message: str, target: str | None = None) -> Refusal:
        return cls(403, "AuthorizationFailed", message, target)

    @classmethod
    def not_found(cls, code: str, message: str) -> Refusal:
        return cls(404, code, message)

    @classmethod
    def unavailable(cls, message: str) -> Refusal:
        return cls(UNAVAILABLE, "AuthorizationUnavailable", message)


class TransientFailureError(RuntimeError):
    """Something we depend on is down (RBAC, storage): nothing was opened; try again later."""
