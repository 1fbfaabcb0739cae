"""Events and notifications: every lifecycle audit row becomes one CloudEvents 1.0 event, delivered
per channel (each webhook, the Event Grid topic) through the events queue, with retries and a poison
queue, so a failing endpoint never delays enforcement. See `cloudevents.py` for the one table that
maps audit events to CloudEvent types."""
