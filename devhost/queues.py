"""Queue triggers on Azure Storage queues (Azurite locally), with the Functions host's semantics.

Per function: poll up to batchSize messages, run them concurrently, fetch the next batch once the
number still running drops to newBatchThreshold; back off exponentially (from 100 ms up to
maxPollingInterval) while the queue is empty. Success deletes the message; failure makes it
visible again after visibilityTimeout; a failure on the last allowed attempt (dequeue count >=
maxDequeueCount) moves the message to `<queue>-poison`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from devhost.config import QueueOptions
from devhost.functions import IN_FLIGHT, IndexingError, QueueFunction, invoke
from devhost.logs import log_event

# The host keeps a message invisible while its function runs (and renews that); ten minutes
# covers any invocation of this app without renewing.
PROCESSING_VISIBILITY_SECONDS = 600
MIN_POLLING_INTERVAL = 0.1


def connection_string(setting: str) -> str:
    """The connection named by a binding, looked up as the host does (`X`, then `AzureWebJobsX`)."""
    for name in (setting, f"AzureWebJobs{setting}"):
        value = os.environ.get(name)
        if value:
            return value
    if any(key.startswith(f"{setting}__") for key in os.environ):
        raise IndexingError(
            f"connection {setting!r} is identity-based ({setting}__...); devhost supports only "
            "connection strings"
        )
    raise IndexingError(f"connection setting {setting!r} is not defined in the environment")


class QueueListener:
    def __init__(self, function: QueueFunction, options: QueueOptions, stop: threading.Event):
        self.function = function
        self.options = options
        self.stop = stop
        conn = connection_string(function.connection_setting)
        # Few SDK retries: the poll loop is the retry, and it must notice a stop request promptly.
        client_options: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5}
        self.queue = QueueClient.from_connection_string(conn, function.queue_name, **client_options)
        self.poison_queue = QueueClient.from_connection_string(
            conn, f"{function.queue_name}-poison", **client_options
        )
        self._poison_ready = False
        self._running = 0
        self._slots = threading.Condition()
        self._executor = ThreadPoolExecutor(
            max_workers=options.batch_size + options.new_batch_threshold,
            thread_name_prefix=f"queue-{function.name}",
        )
        self._thread = threading.Thread(target=self._poll_loop, name=f"poll-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        self._executor.shutdown(wait=False)

    def _poll_loop(self) -> None:
        delay = 0.0
        created = False
        while not self.stop.is_set():
            try:
                if not created:
                    _create_if_missing(self.queue)
                    created = True
                    log_event("queue.listening", function=self.function.name, queue=self.function.queue_name)
                with self._slots:
                    self._slots.wait_for(
                        lambda: self._running <= self.options.new_batch_threshold or self.stop.is_set()
                    )
                if self.stop.is_set():
                    return
                messages = list(
                    self.queue.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=PROCESSING_VISIBILITY_SECONDS,
                    )
                )
            except AzureError as error:
                log_event(
                    "queue.poll_failed",
                    level=30,
                    function=self.function.name,
                    queue=self.function.queue_name,
                    error=f"{type(error).__name__}: {error}".splitlines()[0],
                )
                delay = self._next_delay(delay)
                self.stop.wait(delay)
                continue
            if not messages:
                delay = self._next_delay(delay)
                self.stop.wait(delay)
                continue
            delay = 0.0
            for message in messages:
                with self._slots:
                    self._running += 1
                self._executor.submit(self._process_and_release, message)

    def _next_delay(self, delay: float) -> float:
        ceiling = max(self.options.max_polling_interval.total_seconds(), MIN_POLLING_INTERVAL)
        return min(max(delay * 2, MIN_POLLING_INTERVAL), ceiling)

    def _process_and_release(self, message: QueueMessage) -> None:
        try:
            # Counted until the message is settled, so a graceful stop does not abandon it.
            with IN_FLIGHT:
                self._process(message)
        except AzureError as error:
            log_event(
                "queue.settle_failed",
                level=40,
                function=self.function.name,
                queue=self.function.queue_name,
                message_id=message.id,
                error=f"{type(error).__name__}: {error}".splitlines()[0],
            )
        finally:
            with self._slots:
                self._running -= 1
                self._slots.notify_all()

    def _process(self, message: QueueMessage) -> None:
        if self.stop.is_set():
            # Received but not started before the stop: hand it back now rather than leave it
            # invisible for the whole processing lease.
            self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
            return
        dequeue_count = int(message.dequeue_count or 1)
        if dequeue_count > self.options.max_dequeue_count:
            self._poison(message, reason="dequeue count exceeded before processing")
            return
        try:
            body = self._decode(message.content)
        except ValueError as error:
            self._poison(message, reason=str(error))
            return
        # The worker's concrete class: func.QueueMessage itself has no dequeue count or times.
        trigger_value = FunctionsQueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        outcome = invoke(
            self.function,
            trigger_value,
            queue=self.function.queue_name,
            message_id=message.id,
            dequeue_count=dequeue_count,
        )
        if outcome.error is None:
            try:
                self.queue.delete_message(message.id, message.pop_receipt)
            except ResourceNotFoundError:
                log_event("queue.message.already_gone", level=30, message_id=message.id)
        elif dequeue_count >= self.options.max_dequeue_count:
            self._poison(message, reason="function failed on the last allowed attempt")
        else:
            self.queue.update_message(
                message.id,
                message.pop_receipt,
                visibility_timeout=round(self.options.visibility_timeout.total_seconds()),
            )

    def _decode(self, content: Any) -> bytes:
        raw = content if isinstance(content, bytes) else str(content or "").encode("utf-8")
        if self.options.message_encoding == "none":
            return raw
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as error:
            raise ValueError(
                "message is not base64 (host.json extensions.queues.messageEncoding is base64)"
            ) from error

    def _poison(self, message: QueueMessage, *, reason: str) -> None:
        if not self._poison_ready:
            _create_if_missing(self.poison_queue)
            self._poison_ready = True
        self.poison_queue.send_message(message.content)
        with contextlib.suppress(ResourceNotFoundError):
            self.queue.delete_message(message.id, message.pop_receipt)
        log_event(
            "queue.message.poisoned",
            level=40,
            function=self.function.name,
            queue=self.function.queue_name,
            poison_queue=self.poison_queue.queue_name,
            message_id=message.id,
            dequeue_count=message.dequeue_count,
            reason=reason,
        )


def _create_if_missing(queue: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
