"""Schedules, settings, host.json and indexing: the host's start-up decisions, without processes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest

from devhost.config import (
    ConfigError,
    apply_local_settings,
    load_host_config,
    resolve_setting_expressions,
)
from devhost.functions import HttpFunction, IndexingError, QueueFunction, TimerFunction, index_functions
from devhost.schedule import ScheduleError, parse_schedule

pytestmark = pytest.mark.unit  # pure: `make test-unit` runs it

T0 = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)  # a Monday


def occurrences(expression: str, count: int = 3) -> list[str]:
    schedule = parse_schedule(expression)
    moment, found = T0, []
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment.isoformat())
    return found


def test_ncrontab_seconds_come_first() -> None:
    assert occurrences("*/15 * * * * *") == [
        "2024-01-01T00:00:15+00:00",
        "2024-01-01T00:00:30+00:00",
        "2024-01-01T00:00:45+00:00",
    ]
    assert occurrences("0 */5 * * * *", 2) == ["2024-01-01T00:05:00+00:00", "2024-01-01T00:10:00+00:00"]
    assert occurrences("0 30 9 * * 1-5", 1) == ["2024-01-01T09:30:00+00:00"]
    assert occurrences("0 0 0 * * SUN", 1) == ["2024-01-07T00:00:00+00:00"]


def test_ncrontab_day_of_month_and_weekday_must_both_match() -> None:
    # NCrontab ANDs the two day fields: the 1st of a month that is a Monday.
    assert occurrences("0 0 0 1 * MON", 2) == ["2024-04-01T00:00:00+00:00", "2024-07-01T00:00:00+00:00"]


def test_five_fields_mean_minute_precision_and_timespans_are_intervals() -> None:
    assert occurrences("*/10 * * * *", 1) == ["2024-01-01T00:10:00+00:00"]
    assert parse_schedule("00:05:00").next_after(T0) == T0 + timedelta(minutes=5)
    assert parse_schedule("1.00:00:00").next_after(T0) == T0 + timedelta(days=1)


@pytest.mark.parametrize(
    "expression", ["61 * * * * *", "* * * *", "* * * * * * *", "0 0 0 32 * *", "00:00:00"]
)
def test_bad_schedules_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError, match="timer schedule"):
        parse_schedule(expression)


def test_local_settings_do_not_override_the_environment(tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file", "C": "file"}}))
    environ = {"A": "env", "B": ""}
    skipped = apply_local_settings(settings, environ)
    assert environ == {"A": "env", "B": "file", "C": "file"}
    assert skipped == ["A"]


def test_encrypted_local_settings_are_refused(tmp_path: Path) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": True, "Values": {}}))
    with pytest.raises(ConfigError, match="IsEncrypted"):
        apply_local_settings(settings, {})


def test_the_projects_kind_of_host_json_is_read(tmp_path: Path) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": "api"},
                    "queues": {
                        "batchSize": 16,
                        "maxDequeueCount": 5,
                        "visibilityTimeout": "00:00:30",
                        "messageEncoding": "base64",
                        "maxPollingInterval": "00:00:02",
                    },
                },
                "extensionBundle": {
                    "id": "Microsoft.Azure.Functions.ExtensionBundle",
                    "version": "[4.*, 5.0.0)",
                },
            }
        )
    )
    config = load_host_config(host_json)
    assert config.route_prefix == "api"
    assert config.queues.batch_size == 16
    assert config.queues.new_batch_threshold == 8
    assert config.queues.max_dequeue_count == 5
    assert config.queues.visibility_timeout == timedelta(seconds=30)
    assert config.queues.max_polling_interval == timedelta(seconds=2)
    assert config.queues.message_encoding == "base64"


@pytest.mark.parametrize(
    ("queues", "named"),
    [
        ({"batchSize": 64}, "batchSize"),
        ({"visibilityTimeout": "30s"}, "visibilityTimeout"),
        ({"messageEncoding": "utf8"}, "messageEncoding"),
    ],
)
def test_bad_host_json_names_the_field(tmp_path: Path, queues: dict[str, object], named: str) -> None:
    host_json = tmp_path / "host.json"
    host_json.write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
    with pytest.raises(ConfigError, match=named):
        load_host_config(host_json)


def test_setting_expressions_resolve_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_QUEUE", "jobs")
    assert resolve_setting_expressions("%JOBS_QUEUE%-x", where="q") == "jobs-x"
    with pytest.raises(ConfigError, match="NOPE_SETTING"):
        resolve_setting_expressions("%NOPE_SETTING%", where="q")


def test_indexing_reads_every_trigger_from_the_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORK_QUEUE", "Work-Items")
    monkeypatch.setenv("TICK_SCHEDULE", "*/5 * * * * *")
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="things/{id}", methods=["PUT"])
    def put_thing(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    @app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="Storage")
    def work(msg: func.QueueMessage, context: func.Context) -> None:
        return None

    @app.function_name("ticker")
    @app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=True)
    def tick(timer: func.TimerRequest) -> None:
        return None

    http, queue, timer = index_functions(app, tmp_path)
    assert isinstance(http, HttpFunction) and http.methods == {"PUT"} and http.route.template == "things/{id}"
    assert isinstance(queue, QueueFunction)
    assert (queue.queue_name, queue.connection_setting, queue.context_arg) == (
        "work-items",
        "Storage",
        "context",
    )
    assert isinstance(timer, TimerFunction) and timer.name == "ticker" and timer.run_on_startup
    assert timer.schedule is not None and timer.schedule.cron == "*/5 * * * * *"


def test_unsupported_bindings_fail_loudly(tmp_path: Path) -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="in", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="out", connection="AzureWebJobsStorage")
    def relay(msg: func.QueueMessage, out: func.Out[str]) -> None:
        return None

    with pytest.raises(IndexingError, match=r"relay: binding type\(s\) queue are not supported"):
        index_functions(app, tmp_path)


def test_disabled_functions_are_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AzureWebJobs.off.Disabled", "true")
    app = func.FunctionApp()

    @app.route(route="off")
    def off(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse()

    assert index_functions(app, tmp_path) == []


def test_bad_queue_name_is_refused(tmp_path: Path) -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name="a_b", connection="AzureWebJobsStorage")
    def bad(msg: func.QueueMessage) -> None:
        return None

    with pytest.raises(IndexingError, match="queue name 'a_b'"):
        index_functions(app, tmp_path)
