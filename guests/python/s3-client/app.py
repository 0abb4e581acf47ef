"""boto3's S3 client inside a function (a test guest): the HTTP request
body names a bucket the function is granted and one it is not; the
function runs the S3 calls and answers with what it saw, as JSON."""

import io
import json

import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3")


def _error(e: ClientError) -> dict:
    return {
        "class": type(e).__name__,
        "code": e.response["Error"]["Code"],
        "message": e.response["Error"]["Message"],
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        "operation": e.operation_name,
        "str": str(e),
    }


def _calls(bucket: str, ungranted: str) -> dict:
    seen = {}
    seen["put"] = s3.put_object(Bucket=bucket, Key="a/one.txt", Body=b"hello")["ETag"]
    s3.put_object(Bucket=bucket, Key="a/two.txt", Body="two, as str")
    s3.put_object(Bucket=bucket, Key="b/three.txt", Body=io.BytesIO(b"three, from a file"))

    got = s3.get_object(Bucket=bucket, Key="a/one.txt")
    seen["get"] = {
        "body": got["Body"].read().decode(),
        "length": got["ContentLength"],
        "etag": got["ETag"],
        "last_modified_year": got["LastModified"].year,
        "status": got["ResponseMetadata"]["HTTPStatusCode"],
    }
    part = s3.get_object(Bucket=bucket, Key="a/one.txt", Range="bytes=1-3")
    seen["range"] = {"body": part["Body"].read().decode(), "content_range": part["ContentRange"]}

    head = s3.head_object(Bucket=bucket, Key="a/two.txt")
    seen["head"] = {"length": head["ContentLength"], "etag": head["ETag"]}

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    seen["list"] = {
        "keys": [o["Key"] for o in listing["Contents"]],
        "sizes": [o["Size"] for o in listing["Contents"]],
        "count": listing["KeyCount"],
        "truncated": listing["IsTruncated"],
    }
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
    rest = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, ContinuationToken=first["NextContinuationToken"])
    seen["pages"] = {
        "first": [o["Key"] for o in first["Contents"]],
        "first_truncated": first["IsTruncated"],
        "rest": [o["Key"] for o in rest.get("Contents", [])],
        "rest_truncated": rest["IsTruncated"],
    }
    folders = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    seen["prefixes"] = [p["Prefix"] for p in folders.get("CommonPrefixes", [])]
    empty = s3.list_objects_v2(Bucket=bucket, Prefix="nothing/")
    seen["empty_has_contents"] = "Contents" in empty

    copied = s3.copy_object(Bucket=bucket, Key="c/copy.txt", CopySource={"Bucket": bucket, "Key": "a/one.txt"})
    s3.copy_object(Bucket=bucket, Key="c/copy2.txt", CopySource=f"{bucket}/b/three.txt")
    seen["copy"] = {
        "etag": copied["CopyObjectResult"]["ETag"],
        "body": s3.get_object(Bucket=bucket, Key="c/copy.txt")["Body"].read().decode(),
        "body2": s3.get_object(Bucket=bucket, Key="c/copy2.txt")["Body"].read().decode(),
    }

    seen["delete"] = s3.delete_object(Bucket=bucket, Key="a/one.txt")["ResponseMetadata"]["HTTPStatusCode"]
    try:
        s3.get_object(Bucket=bucket, Key="a/one.txt")
        seen["get_deleted"] = "no error"
    except s3.exceptions.NoSuchKey as e:
        seen["get_deleted"] = _error(e)
    try:
        s3.head_object(Bucket=bucket, Key="a/one.txt")
        seen["head_deleted"] = "no error"
    except ClientError as e:
        seen["head_deleted"] = _error(e)
    try:
        s3.get_object(Bucket=ungranted, Key="secret.txt")
        seen["ungranted_get"] = "no error"
    except ClientError as e:
        seen["ungranted_get"] = _error(e)
    try:
        s3.put_object(Bucket=ungranted, Key="x", Body=b"x")
        seen["ungranted_put"] = "no error"
    except ClientError as e:
        seen["ungranted_put"] = _error(e)
    try:
        boto3.client("dynamodb")
        seen["dynamodb"] = "no error"
    except NotImplementedError as e:
        seen["dynamodb"] = str(e)
    return seen


def lambda_handler(event, context):
    args = json.loads(event["body"])
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(_calls(args["bucket"], args["ungranted"])),
    }
