"""A Lambda SQS consumer with partial batch responses (a test guest): a
message whose body starts with `fail-once` is reported in
`batchItemFailures` on its first receive, so only it is retried."""


def lambda_handler(event, context):
    failures = []
    for record in event["Records"]:
        receives = int(record["attributes"]["ApproximateReceiveCount"])
        print(f"message {record['messageId']} body {record['body']!r} receive {receives} source {record['eventSource']}")
        if record["body"].startswith("fail-once") and receives == 1:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
