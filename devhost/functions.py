"""Index a FunctionApp from its own metadata and invoke its functions as the Python worker does."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc as functions_abc

from devhost.config import ConfigError, resolve_setting_expressions
from devhost.logs import current_invocation, log_event
from devhost.routing import RouteTemplate, RouteTemplateError, parse_template
from devhost.schedule import Schedule, ScheduleError, parse_schedule

SUPPORTED_BINDINGS = {"httpTrigger", "http", "queueTrigger", "timerTrigger"}
ALL_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"})


class IndexingError(RuntimeError):
    """The app cannot run on this host; the message names the function and the reason."""


@dataclass
class Function:
    name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    directory: str
    context_arg: str | None = None
    http_output_arg: str | None = None

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_arg(self) -> str:
        return str(self.trigger["name"])


@dataclass
class HttpFunction(Function):
    route: RouteTemplate = field(default_factory=lambda: parse_template(""))
    methods: frozenset[str] = ALL_METHODS
    auth_level: str = "FUNCTION"


@dataclass
class QueueFunction(Function):
    queue_name: str = ""
    connection_setting: str = "AzureWebJobsStorage"


@dataclass
class TimerFunction(Function):
    schedule: Schedule | None = None
    run_on_startup: bool = False


class _Out(functions_abc.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(functions_abc.TraceContext):
    def __init__(self, invocation_id: str) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{invocation_id.replace('-', '')[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(functions_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(functions_abc.Context):
    def __init__(self, invocation_id: str, function: Function) -> None:
        self._invocation_id = invocation_id
        self._function = function
        self._local = threading.local()
        self._local.invocation_id = invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function.name

    @property
    def function_directory(self) -> str:
        return self._function.directory

    @property
    def trace_context(self) -> functions_abc.TraceContext:
        return _TraceContext(self._invocation_id)

    @property
    def retry_context(self) -> functions_abc.RetryContext:
        return _RetryContext()


class InFlight:
    """Counts running invocations so a graceful stop can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._count += 1

    def __exit__(self, *_: object) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout=timeout)


IN_FLIGHT = InFlight()


@dataclass
class Outcome:
    invocation_id: str
    value: Any = None
    error: BaseException | None = None


def invoke(function: Function, trigger_value: Any, **log_fields: Any) -> Outcome:
    """Run one invocation; never raises the app's exception, returns it in the Outcome."""
    invocation_id = str(uuid.uuid4())
    context = InvocationContext(invocation_id, function)
    kwargs: dict[str, Any] = {function.trigger_arg: trigger_value}
    if function.context_arg:
        kwargs[function.context_arg] = context
    http_out = _Out() if function.http_output_arg else None
    if function.http_output_arg and http_out is not None:
        kwargs[function.http_output_arg] = http_out
    token = current_invocation.set({"function": function.name, "invocation_id": invocation_id})
    started = time.monotonic()
    outcome = Outcome(invocation_id)
    with IN_FLIGHT:
        log_event("function.started", trigger=function.trigger_type, **log_fields)
        try:
            result = function.user_function(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
            outcome.value = http_out.get() if http_out is not None else result
        except Exception as error:  # noqa: BLE001 - the host reports any failure of the app
            outcome.error = error
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        if outcome.error is None:
            log_event("function.finished", outcome="succeeded", duration_ms=duration_ms)
        else:
            log_event(
                "function.finished",
                level=logging.ERROR,
                outcome="failed",
                duration_ms=duration_ms,
                error=f"{type(outcome.error).__name__}: {outcome.error}",
                traceback="".join(traceback.format_exception(outcome.error)),
            )
    current_invocation.reset(token)
    return outcome


async def _await(awaitable: Any) -> Any:
    return await awaitable


def load_app(spec: str, app_dir: Path) -> func.FunctionApp:
    """`module` or `module:attribute`; without an attribute, `app` or the module's one FunctionApp."""
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, str(app_dir))
    module = importlib.import_module(module_name)
    if attribute:
        app = getattr(module, attribute, None)
    elif isinstance(getattr(module, "app", None), func.FunctionApp):
        app = module.app
    else:
        apps = [value for value in vars(module).values() if isinstance(value, func.FunctionApp)]
        app = apps[0] if len(apps) == 1 else None
    if not isinstance(app, func.FunctionApp):
        raise IndexingError(f"{spec}: no azure.functions.FunctionApp found (expected `app`)")
    return app


def index_functions(app: func.FunctionApp, app_dir: Path) -> list[Function]:
    """Every enabled function of the app, with its trigger configuration resolved and checked."""
    functions: list[Function] = []
    for indexed in app.get_functions():
        name = indexed.get_function_name() or indexed.get_user_function().__name__
        if os.environ.get(f"AzureWebJobs.{name}.Disabled", "").lower() in {"true", "1"}:
            log_event("function.disabled", function=name)
            continue
        try:
            functions.append(_build(name, indexed, app_dir))
        except (ConfigError, RouteTemplateError, ScheduleError) as error:
            raise IndexingError(f"function {name}: {error}") from error
    return functions


def _build(name: str, indexed: Any, app_dir: Path) -> Function:
    bindings: list[dict[str, Any]] = json.loads(indexed.get_function_json())["bindings"]
    unsupported = sorted({b["type"] for b in bindings} - SUPPORTED_BINDINGS)
    if unsupported:
        raise IndexingError(
            f"function {name}: binding type(s) {', '.join(unsupported)} are not supported by "
            f"devhost (supported: {', '.join(sorted(SUPPORTED_BINDINGS))}); use SDK clients "
            "in the function or extend devhost"
        )
    triggers = [b for b in bindings if b["type"].endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(f"function {name}: expected exactly one trigger, got {len(triggers)}")
    trigger = triggers[0]
    user_function = indexed.get_user_function()
    common: dict[str, Any] = {
        "name": name,
        "user_function": user_function,
        "trigger": trigger,
        "bindings": bindings,
        "directory": str(app_dir),
    }
    kind = trigger["type"]
    function: Function
    if kind == "httpTrigger":
        methods = trigger.get("methods")
        function = HttpFunction(
            **common,
            route=parse_template(trigger.get("route") or name),
            methods=frozenset(m.upper() for m in methods) if methods else ALL_METHODS,
            auth_level=str(trigger.get("authLevel", "FUNCTION")),
        )
        outputs = [b for b in bindings if b["type"] == "http"]
        if len(outputs) > 1:
            raise IndexingError(f"function {name}: more than one http output binding")
        if outputs and outputs[0]["name"] != "$return":
            function.http_output_arg = outputs[0]["name"]
    elif kind == "queueTrigger":
        queue_name = resolve_setting_expressions(
            str(trigger["queueName"]), where=f"function {name} queueName"
        ).lower()
        _check_queue_name(name, queue_name)
        function = QueueFunction(
            **common,
            queue_name=queue_name,
            connection_setting=str(trigger.get("connection") or "AzureWebJobsStorage"),
        )
    else:
        schedule = resolve_setting_expressions(str(trigger["schedule"]), where=f"function {name} schedule")
        function = TimerFunction(
            **common,
            schedule=parse_schedule(schedule),
            run_on_startup=bool(trigger.get("runOnStartup", False)),
        )
    _bind_parameters(function, user_function)
    return function


def _check_queue_name(function: str, queue_name: str) -> None:
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", queue_name):
        raise IndexingError(
            f"function {function}: queue name {queue_name!r} is not valid (3-63 characters: "
            "lowercase letters, digits and single hyphens, starting and ending alphanumeric)"
        )


def _bind_parameters(function: Function, user_function: Callable[..., Any]) -> None:
    """Match the Python parameters to the bindings, as the worker does at indexing time."""
    parameters = inspect.signature(user_function).parameters
    bound = {function.trigger_arg}
    if function.http_output_arg:
        bound.add(function.http_output_arg)
    for parameter_name, parameter in parameters.items():
        if parameter_name in bound:
            continue
        annotation = parameter.annotation
        if parameter_name == "context" or (
            inspect.isclass(annotation) and issubclass(annotation, functions_abc.Context)
        ):
            function.context_arg = parameter_name
            continue
        if parameter.default is inspect.Parameter.empty:
            raise IndexingError(f"function {function.name}: parameter {parameter_name!r} matches no binding")
    missing = bound - set(parameters)
    if missing:
        raise IndexingError(
            f"function {function.name}: binding(s) {', '.join(sorted(missing))} have no parameter"
        )
