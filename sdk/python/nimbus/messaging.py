"""Publishing to the tenant's durable queues (`wasmcloud:messaging`): the
topics granted to the function (`topics` in its config).

    nimbus.messaging.publish("jobs", {"resize": "a.png"})

A publish returns once the message is on disk in the queue.
"""

import json
from typing import Any, Dict, Optional

from componentize_py_types import Err
from wit_world.imports import producer, wasmcloud_messaging_types as types

from .errors import AccessDenied, ServiceError, Timeout

_client: Optional[types.Client] = None


def _error(topic: str, e: Err) -> Exception:
    v = e.value
    if isinstance(v, types.Error_PermissionDenied):
        return AccessDenied(f"topic {topic!r} is not granted to this function")
    if isinstance(v, types.Error_Timeout):
        return Timeout(f"publishing to topic {topic!r} timed out")
    return ServiceError(f"topic {topic!r}: {getattr(v, 'value', v)}")


def publish(
    topic: str,
    body: Any,
    content_type: Optional[str] = None,
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """Publishes `body` to `topic`: bytes as they are, a str as UTF-8 (text/plain),
    anything else as JSON (application/json). `metadata` travels with the
    message (a queue-triggered function sees it in the event's attributes)."""
    global _client
    if isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    elif isinstance(body, str):
        data = body.encode()
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        data = json.dumps(body).encode()
        content_type = content_type or "application/json"
    try:
        if _client is None:
            _client = types.Client.connect("nimbus")
        message = types.Message(data)
        if content_type:
            message.set_content_type(content_type)
        for k, v in (metadata or {}).items():
            message.add_metadata(str(k), str(v))
        producer.send(_client, topic, message)
    except Err as e:
        raise _error(topic, e) from None
