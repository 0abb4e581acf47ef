"""The Nimbus SDK for Python functions.

Write `app.py` with one of:

- `lambda_handler(event, context)` (or `handler`): an AWS Lambda handler;
  events arrive in their AWS shapes (S3, SQS, EventBridge, API Gateway v2)
  and `context` is a Lambda context (`nimbus.aws`);
- `handle(event)`: every trigger's `nimbus.Event`, returning a
  `nimbus.Response`, bytes, str, JSON-serializable value or None;
- `handle_http(request)`: HTTP requests as `nimbus.Request`, returning a
  `nimbus.HttpResponse`, bytes, str or JSON-serializable value.

Services: `nimbus.kv`, `nimbus.blob`, `nimbus.messaging`, `nimbus.config`,
`nimbus.log`, `nimbus.context`. Nothing here calls the host until used:
a module's top level runs when the component is built.
"""

from .errors import (
    AccessDenied,
    InvalidInput,
    NimbusError,
    NoSuchContainer,
    NoSuchObject,
    NoSuchStore,
    NotFound,
    ServiceError,
    Timeout,
)
from .types import Event, HttpResponse, Request, Response
from . import aws, blob, config, context, kv, log, messaging

__all__ = [
    "AccessDenied",
    "Event",
    "HttpResponse",
    "InvalidInput",
    "NimbusError",
    "NoSuchContainer",
    "NoSuchObject",
    "NoSuchStore",
    "NotFound",
    "Request",
    "Response",
    "ServiceError",
    "Timeout",
    "aws",
    "blob",
    "config",
    "context",
    "kv",
    "log",
    "messaging",
]
