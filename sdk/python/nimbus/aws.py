"""AWS Lambda shapes of Nimbus events, HTTP requests and handler results,
for handlers written as `lambda_handler(event, context)`. Pure Python:
nothing here touches the host, so the conversions can be tried anywhere.

What maps to what (the host's events are CloudEvents; see the SDK README):

| Nimbus event | Lambda event |
|---|---|
| `nimbus.object.created` | S3 notification (`Records[0].s3…`, `ObjectCreated:Put`) |
| `nimbus.queue.message` | SQS (`Records[0]`: one message per invocation) |
| `nimbus.schedule.tick` | EventBridge `Scheduled Event` |
| HTTP request | API Gateway v2 / function URL payload (version 2.0) |
| anything else | the CloudEvent as a dict (CloudEvents JSON format) |
"""

import base64
import datetime
import hashlib
import json
import sys
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, quote_plus

from .types import Event, Request

#: What Nimbus reports as the AWS region (`awsRegion`, ARNs, `AWS_REGION`).
REGION = "nimbus"
#: The ARN partition of Nimbus resources (`arn:nimbus:…`).
PARTITION = "nimbus"


def _source_parts(source: str, prefix: str) -> List[str]:
    """`/storage/v1/acme/uploads` with prefix `/storage/v1/` → [acme, uploads]."""
    if source.startswith(prefix):
        return source[len(prefix) :].split("/")
    return []


def _epoch_ms(rfc3339: Optional[str]) -> int:
    if not rfc3339:
        return 0
    try:
        t = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(t.timestamp() * 1000)


def _md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def s3_key(key: str) -> str:
    """An object key as S3 writes it into notifications: URL-encoded with
    spaces as `+` (decode with `urllib.parse.unquote_plus`); `/` is kept."""
    return quote_plus(key, safe="/")


def s3_event(event: Event) -> Dict[str, Any]:
    """`nimbus.object.created` → an S3 `ObjectCreated:Put` notification."""
    parts = _source_parts(event.source, "/storage/v1/")
    tenant = parts[0] if parts else ""
    attrs = event.attributes
    try:
        data = json.loads(event.data) if event.data else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    bucket = data.get("container") or attrs.get("container") or (parts[1] if len(parts) > 1 else "")
    key = data.get("key") or attrs.get("key") or event.subject or ""
    size = data.get("size", attrs.get("size", 0))
    etag = data.get("etag") or attrs.get("etag") or ""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": event.time or data.get("time") or "",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": tenant},
                "requestParameters": {"sourceIPAddress": ""},
                "responseElements": {"x-amz-request-id": event.id},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "nimbus-object-trigger",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": tenant},
                        "arn": f"arn:{PARTITION}:s3:::{bucket}",
                    },
                    "object": {
                        "key": s3_key(key),
                        "size": int(size),
                        "eTag": etag,
                        # S3's sequencer orders the events of one key; the
                        # etag is a UUIDv7, time-ordered, so its hex does too.
                        "sequencer": etag.replace("-", "").upper(),
                    },
                },
            }
        ]
    }


#: Attributes the queue trigger sets itself; the rest are message metadata.
_QUEUE_ATTRIBUTES = ("queue", "receivecount")


def sqs_event(event: Event) -> Dict[str, Any]:
    """`nimbus.queue.message` → an SQS event of that one message."""
    parts = _source_parts(event.source, "/queues/v1/")
    tenant = parts[0] if parts else ""
    attrs = event.attributes
    queue = attrs.get("queue") or (parts[1] if len(parts) > 1 else "")
    receives = attrs.get("receivecount", "1")
    handle = f"{queue}:{event.id}:{receives}".encode()
    return {
        "Records": [
            {
                "messageId": event.id,
                "receiptHandle": base64.b64encode(handle).decode(),
                # SQS bodies are text: bytes that are not UTF-8 are replaced.
                "body": event.data.decode("utf-8", errors="replace"),
                "attributes": {
                    "ApproximateReceiveCount": receives,
                    "SentTimestamp": str(_epoch_ms(event.time)),
                    "SenderId": tenant,
                },
                "messageAttributes": {
                    k: {
                        "stringValue": v,
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String",
                    }
                    for k, v in attrs.items()
                    if k not in _QUEUE_ATTRIBUTES
                },
                "md5OfBody": _md5_hex(event.data),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:{PARTITION}:sqs:{REGION}:{tenant}:{queue}",
                "awsRegion": REGION,
            }
        ]
    }


def _seconds(rfc3339: Optional[str]) -> str:
    """EventBridge writes times to the second: `2024-01-01T00:00:00Z`."""
    ms = _epoch_ms(rfc3339)
    t = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_event(event: Event) -> Dict[str, Any]:
    """`nimbus.schedule.tick` → an EventBridge scheduled event."""
    parts = _source_parts(event.source, "/schedules/")
    tenant = parts[0] if parts else ""
    function = parts[1] if len(parts) > 1 else ""
    return {
        "version": "0",
        "id": event.id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": tenant,
        "time": _seconds(event.time),
        "region": REGION,
        "resources": [f"arn:{PARTITION}:events:{REGION}:{tenant}:rule/{function}"],
        "detail": {},
    }


_CORE = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "data_base64")


def cloudevent(event: Event) -> Dict[str, Any]:
    """Any other event, in the CloudEvents JSON format: JSON data parsed,
    text as a str, other bytes as `data_base64`; extension attributes as
    top-level members."""
    out: Dict[str, Any] = {"specversion": "1.0", "id": event.id, "source": event.source, "type": event.type}
    for name, value in (("subject", event.subject), ("time", event.time), ("datacontenttype", event.content_type)):
        if value is not None:
            out[name] = value
    for k, v in event.attributes.items():
        if k not in _CORE:
            out[k] = v
    ct = (event.content_type or "").lower()
    if event.data:
        try:
            if "json" in ct:
                out["data"] = json.loads(event.data)
            else:
                out["data"] = event.data.decode()
        except ValueError:
            out["data_base64"] = base64.b64encode(event.data).decode()
    return out


def lambda_event(event: Event) -> Any:
    """The Lambda event for a Nimbus event."""
    if event.type == "nimbus.object.created":
        return s3_event(event)
    if event.type == "nimbus.queue.message":
        return sqs_event(event)
    if event.type == "nimbus.schedule.tick":
        return schedule_event(event)
    return cloudevent(event)


def failed_batch_items(result: Any, message_id: str) -> bool:
    """Whether an SQS handler's result (`{"batchItemFailures": [...]}`)
    fails the message: it names it, or an entry has no id (which Lambda
    treats as failing the whole batch)."""
    if not isinstance(result, dict):
        return False
    failures = result.get("batchItemFailures")
    if not failures:
        return False
    for item in failures:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident == message_id:
            return True
    return False


_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "+json", "+xml", "application/yaml")


def _is_text(content_type: str) -> bool:
    ct = content_type.lower().split(";")[0].strip()
    return ct == "" or any(t in ct for t in _TEXT_TYPES)


def http_event(request: Request, request_id: str, account: str, api_id: str, time_ms: int) -> Dict[str, Any]:
    """An HTTP request → the API Gateway v2 / function URL payload."""
    headers: Dict[str, str] = {}
    cookies: List[str] = []
    for name, value in request.header_list:
        name = name.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    when = datetime.datetime.fromtimestamp(time_ms / 1000, tz=datetime.timezone.utc)
    domain = headers.get("host", "")
    forwarded = headers.get("x-forwarded-for", "")
    event: Dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.path,
        "rawQueryString": request.query_string,
        "headers": headers,
        "requestContext": {
            "accountId": account,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": "HTTP/1.1",
                "sourceIp": forwarded.split(",")[0].strip(),
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": time_ms,
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if request.query_string:
        params: Dict[str, str] = {}
        for k, v in parse_qsl(request.query_string, keep_blank_values=True):
            params[k] = f"{params[k]},{v}" if k in params else v
        event["queryStringParameters"] = params
    if request.body:
        text = None
        if _is_text(headers.get("content-type", "")):
            try:
                text = request.body.decode()
            except UnicodeDecodeError:
                pass
        if text is None:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


def http_response(result: Any) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """A Lambda handler's result → (status, headers, body), as function URLs
    read it: a dict with `statusCode` is the response; anything else is a
    200 whose body is the result (a str as is, other values as JSON)."""
    if isinstance(result, dict) and "statusCode" in result:
        status = int(result["statusCode"])
        headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((str(name).lower(), str(v)) for v in values)
        headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
        body = result.get("body")
        if body is None:
            data = b""
        elif result.get("isBase64Encoded"):
            data = base64.b64decode(body)
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        else:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        if data and not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        return status, headers, data
    if isinstance(result, (bytes, bytearray)):
        return 200, [("content-type", "application/octet-stream")], bytes(result)
    body = result if isinstance(result, str) else json.dumps(result)
    return 200, [("content-type", "application/json")], body.encode()


class LambdaContext:
    """The `context` a Lambda handler gets, from the invocation's
    `nimbus:function/context` (`invocation` is its record)."""

    def __init__(self, invocation: Any, remaining_ms, today: Optional[str] = None):
        self.aws_request_id: str = invocation.id
        self.function_name: str = invocation.function_name
        self.function_version: str = invocation.function_version
        # A str, as the Lambda runtime reads it from the environment.
        self.memory_limit_in_mb: str = str(invocation.memory_limit_bytes // (1024 * 1024))
        self.invoked_function_arn: str = (
            f"arn:{PARTITION}:lambda:{REGION}:{invocation.tenant}:function:{invocation.function_name}"
        )
        self.log_group_name: str = f"/nimbus/{invocation.tenant}/{invocation.function_name}"
        day = today or datetime.datetime.now(datetime.timezone.utc).strftime("%Y/%m/%d")
        self.log_stream_name: str = f"{day}/[{invocation.function_version}]{invocation.id}"
        self.tenant: str = invocation.tenant
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation's real deadline."""
        return int(self._remaining_ms())

    def log(self, message: str) -> None:
        sys.stdout.write(message)
        sys.stdout.flush()

    def __repr__(self) -> str:
        return (
            f"LambdaContext(aws_request_id={self.aws_request_id!r}, function_name={self.function_name!r}, "
            f"function_version={self.function_version!r}, memory_limit_in_mb={self.memory_limit_in_mb!r})"
        )
