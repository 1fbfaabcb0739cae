"""What a provider declares for one resource type; the engine does the ARM plumbing around it.

Subclass `ResourceType`, set the class attributes, override the hooks you need, and pass an instance
to `engine.add_type(...)` from your provider module's `register(engine)`. See PROVIDERS.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from emulator.engine import Call, Response
    from emulator.ids import ResourceId
    from emulator.store import Record

ActionHandler = Callable[["Call", "ResourceId", "Record"], "Response"]


class ResourceType:
    namespace: ClassVar[str] = ""
    types: ClassVar[tuple[str, ...]] = ()  # ("networkSecurityGroups",) or (..., "securityRules")
    arm_type: ClassVar[str | None] = None  # the body's "type"; default "{namespace}/{types joined}"
    scope: ClassVar[str] = "resourceGroup"  # "resourceGroup" | "subscription" | "any" (extension)
    tracked: ClassVar[bool] = True  # has a required `location` (top-level tracked resources)
    long_running: ClassVar[bool] = False  # PUT/DELETE answer with an ARM async operation
    operations_segment: ClassVar[str] = "operations"  # or "nfvOperations" (firewall policies)
    etag_style: ClassVar[str | None] = "weak"  # 'W/"guid"' | "strong" (bare guid) | None (no etag)
    # When a write meets an operation still running on the same lock_id: 409 AnotherOperationInProgress,
    # 429 RetryableErrorDueToAnotherOperation, or None (the newer write supersedes the older one).
    busy_status: ClassVar[int | None] = None
    # Child types stored inside the parent's body (NSG securityRules, VNet subnets): the path of the
    # array in the parent body. None = stored as its own record (e.g. rule collection groups).
    embedded_in: ClassVar[tuple[str, ...] | None] = None
    delete_missing_status: ClassVar[int] = 204  # DELETE of a resource that does not exist
    sync_delete_status: ClassVar[int] = 200  # DELETE answer when not long-running
    delete_result_status: ClassVar[int] = 204  # operationResults answer once a delete finished
    delete_returns_body: ClassVar[bool] = False  # 202 of a DELETE carries the resource (RCGs)
    patch_supported: ClassVar[bool] = True  # PATCH merges `tags` synchronously
    long_running_delete: ClassVar[bool | None] = None  # None: same as long_running
    # provisioningState of a resource a long-running PUT creates (Compute says "Creating"); None:
    # "Updating", as the Network RP answers creates and updates alike.
    creating_state: ClassVar[str | None] = None
    # Arrays in the body whose items carry the resource's etag (e.g. a firewall's rule collections).
    etag_arrays: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(self) -> None:
        self.actions: dict[str, ActionHandler] = {}

    @property
    def type_key(self) -> str:
        return "/".join((self.namespace, *self.types))

    @property
    def body_type(self) -> str:
        return self.arm_type or self.type_key

    # --- hooks -----------------------------------------------------------------------------------

    def lock_id(self, rid: ResourceId) -> str:
        """Writes serialised on this id (a rule collection group locks its policy)."""
        return str(rid.parent if self.embedded_in and rid.parent else rid)

    def prepare(
        self,
        call: Call,
        rid: ResourceId,
        body: dict[str, Any],
        existing: dict[str, Any] | None,
        parent: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Validate and normalise a PUT body (a fresh copy you may change); raise ArmError to refuse.
        `existing` is the stored body (read-only), `parent` the parent's stored body for child types.
        The engine then sets id, name, type, etag and properties.provisioningState."""
        return body

    def render(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        """The body as answered: add derived fields (back-references). `body` is the stored object:
        return a copy when you add to it."""
        return body

    def check_delete(self, call: Call, rid: ResourceId, existing: dict[str, Any]) -> None:
        """Raise ArmError to refuse a delete (e.g. a subnet still in use)."""

    def after_write(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        """Side effects on other records after a successful PUT (rarely needed: prefer render)."""

    def after_delete(self, call: Call, rid: ResourceId, body: dict[str, Any]) -> None:
        """Side effects once the resource is gone (records under its id are deleted by the engine)."""
