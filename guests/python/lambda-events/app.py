"""A Lambda handler seeing every kind of event (a test guest):

- an SQS event: each record is printed; a message whose body starts with
  `fail-once` is reported in `batchItemFailures` on its first receive, so
  only it is retried;
- HTTP (API Gateway v2): `…/boom` raises, `…/status/<code>` answers with a
  full `{statusCode, headers, body, cookies}`, anything else echoes;
- any other event: echoed.

The echo is `{"event", "context", "env"}` with no `statusCode`, which over
HTTP makes a 200 JSON response, as function URLs do.
"""

import os

_ENV = (
    "AWS_REGION",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "_HANDLER",
)


def _sqs(event):
    failures = []
    for record in event["Records"]:
        receives = int(record["attributes"]["ApproximateReceiveCount"])
        print(
            f"message {record['messageId']} body {record['body']!r} receive {receives} "
            f"source {record['eventSource']} md5 {record['md5OfBody']} "
            f"attributes {sorted(record['messageAttributes'])}"
        )
        if record["body"].startswith("fail-once") and receives == 1:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def lambda_handler(event, context):
    records = event.get("Records") or [{}]
    if records[0].get("eventSource") == "aws:sqs":
        return _sqs(event)
    path = event.get("rawPath", "")
    if path.endswith("/boom"):
        raise ValueError(f"no such thing as {path}")
    if "/status/" in path:
        return {
            "statusCode": int(path.rsplit("/", 1)[1]),
            "headers": {"content-type": "text/plain", "x-handled-by": context.function_name},
            "body": "made",
            "cookies": ["seen=1; Path=/"],
        }
    remaining = context.get_remaining_time_in_millis()
    return {
        "event": event,
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "remaining_ms": remaining,
        },
        "env": {k: os.environ.get(k) for k in _ENV},
    }
