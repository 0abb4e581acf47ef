"""The S3 client over `wasi:blobstore`: a bucket is one of the function's
granted blob containers, in its tenant. Answers and errors have boto3's
shapes, so code written against S3 runs unchanged for these operations.

What differs from S3 (also in the SDK README): objects carry no content
type or user metadata through `wasi:blobstore` (`ContentType` reads as S3's
default, `Metadata` as empty); `ETag` is the MD5 of the bytes (what S3 gives
a single-part upload), computed by the SDK, so `head_object` and
`copy_object` read the object to give it, a ranged `get_object` and
`list_objects_v2` entries have none.
"""

import base64
import binascii
import datetime
import hashlib
import io
import re
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

import nimbus
from botocore.exceptions import ClientError, ParamValidationError
from botocore.response import StreamingBody

_DEFAULT_CONTENT_TYPE = "binary/octet-stream"
_MAX_KEYS = 1000


def _request_id() -> str:
    try:
        return nimbus.context.current().id
    except Exception:
        return ""


def _metadata(status: int, headers: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    return {
        "RequestId": _request_id(),
        "HostId": "",
        "HTTPStatusCode": status,
        "HTTPHeaders": dict(headers or {}),
        "RetryAttempts": 0,
    }


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _time(ms: int) -> datetime.datetime:
    # S3 times are whole seconds.
    return datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)


def _check(operation: str, params: Dict[str, Any], required: Tuple[str, ...], allowed: Tuple[str, ...]) -> None:
    """botocore's validation: missing required and unknown parameters."""
    problems = [f'Missing required parameter in input: "{p}"' for p in required if p not in params]
    known = required + allowed
    problems += [
        f'Unknown parameter in input: "{p}", must be one of: {", ".join(known)}' for p in params if p not in known
    ]
    for p in required:
        if p in params and not isinstance(params[p], (str, dict)):
            problems.append(f"Invalid type for parameter {p}, value: {params[p]!r}, type: {type(params[p])}")
    if problems:
        raise ParamValidationError(report="\n".join(problems))


# Parameters of S3 that Nimbus's store cannot keep: accepted (so callers
# run unchanged) and ignored.
_IGNORED_PUT = (
    "ACL", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage",
    "ContentType", "Expires", "Metadata", "ServerSideEncryption", "StorageClass",
    "Tagging", "ChecksumAlgorithm", "ExpectedBucketOwner", "SSEKMSKeyId", "BucketKeyEnabled",
)
_IGNORED_GET = ("ExpectedBucketOwner", "ChecksumMode", "RequestPayer", "VersionId")


class S3ClientExceptions:
    """`client.exceptions`: the error classes boto3 models for S3, each a
    `ClientError` raised for its code."""

    ClientError = ClientError

    def __init__(self):
        self._by_code = {}
        for code in (
            "NoSuchKey",
            "NoSuchBucket",
            "BucketAlreadyExists",
            "BucketAlreadyOwnedByYou",
            "InvalidObjectState",
            "NoSuchUpload",
            "ObjectAlreadyInActiveTierError",
            "ObjectNotInActiveTierError",
        ):
            cls = type(code, (ClientError,), {"__module__": "botocore.errorfactory"})
            setattr(self, code, cls)
            self._by_code[code] = cls

    def from_code(self, code: str):
        return self._by_code.get(code, ClientError)


class _Paginator:
    def __init__(self, client: "S3", operation: str):
        self._client = client
        self._operation = operation

    def paginate(self, PaginationConfig: Optional[Dict[str, Any]] = None, **params):
        config = PaginationConfig or {}
        page_size = config.get("PageSize")
        max_items = config.get("MaxItems")
        token = config.get("StartingToken")
        seen = 0
        while True:
            call = dict(params)
            if page_size:
                call["MaxKeys"] = page_size
            if token:
                call["ContinuationToken"] = token
            page = self._client.list_objects_v2(**call)
            if max_items is not None and "Contents" in page:
                page["Contents"] = page["Contents"][: max(0, max_items - seen)]
            seen += len(page.get("Contents", []))
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token or (max_items is not None and seen >= max_items):
                return


class S3:
    """`boto3.client('s3')` for a Nimbus function."""

    def __init__(self, region_name: str):
        self.exceptions = S3ClientExceptions()
        self._region = region_name
        self._containers: Dict[str, nimbus.blob.Container] = {}
        self.meta = type("ClientMeta", (), {"region_name": region_name, "service_model": None})()

    def __repr__(self) -> str:
        return "<botocore.client.S3 object (Nimbus blob containers)>"

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"'S3' object has no attribute '{name}': Nimbus's S3 client supports get_object, "
            "put_object, head_object, delete_object, delete_objects, list_objects_v2, copy_object, "
            "upload_fileobj, download_fileobj and get_paginator('list_objects_v2')"
        )

    def can_paginate(self, operation_name: str) -> bool:
        return operation_name == "list_objects_v2"

    def get_paginator(self, operation_name: str) -> _Paginator:
        if operation_name != "list_objects_v2":
            raise NotImplementedError(f"no paginator for {operation_name!r}: only 'list_objects_v2'")
        return _Paginator(self, operation_name)

    # -- errors

    def _container(self, bucket: str) -> "nimbus.blob.Container":
        c = self._containers.get(bucket)
        if c is None:
            c = self._containers[bucket] = nimbus.blob.container(bucket)
        return c

    def _raise(self, operation: str, code: str, message: str, status: int, head: bool = False, **extra):
        if head:
            # A HEAD answer has no body: botocore sees only the status.
            code, message = str(status), {403: "Forbidden", 404: "Not Found"}.get(status, message)
            extra = {}
        error = {"Code": code, "Message": message}
        error.update(extra)
        response = {"Error": error, "ResponseMetadata": _metadata(status)}
        raise self.exceptions.from_code(code)(response, operation)

    def _fail(self, operation: str, e: Exception, bucket: str, key: Optional[str] = None, head: bool = False):
        if isinstance(e, nimbus.AccessDenied):
            self._raise(operation, "AccessDenied", f"Access Denied ({e})", 403, head)
        if isinstance(e, nimbus.NoSuchContainer):
            self._raise(operation, "NoSuchBucket", "The specified bucket does not exist", 404, head, BucketName=bucket)
        if isinstance(e, nimbus.NoSuchObject):
            self._raise(operation, "NoSuchKey", "The specified key does not exist.", 404, head, Key=key)
        text = str(e)
        if "over the limit" in text:
            self._raise(operation, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400, head)
        if "bad object name" in text:
            too_long = len((key or "").encode()) > 1024
            self._raise(operation, "KeyTooLongError" if too_long else "InvalidArgument", text, 400, head)
        if "quota" in text:
            self._raise(operation, "QuotaExceeded", text, 507, head)
        self._raise(operation, "InternalError", text, 500, head)

    def _info(self, operation: str, bucket: str, key: str, head: bool = False) -> "nimbus.blob.ObjectInfo":
        try:
            return self._container(bucket).info(key)
        except nimbus.NimbusError as e:
            self._fail(operation, e, bucket, key, head)

    def _read(self, operation: str, bucket: str, key: str, start: int = 0, end: Optional[int] = None, head: bool = False) -> bytes:
        try:
            return self._container(bucket).get(key, start, end)
        except nimbus.NimbusError as e:
            self._fail(operation, e, bucket, key, head)

    # -- operations

    def get_object(self, **params) -> Dict[str, Any]:
        _check("GetObject", params, ("Bucket", "Key"), ("Range",) + _IGNORED_GET)
        bucket, key = params["Bucket"], params["Key"]
        info = self._info("GetObject", bucket, key)
        headers = {"accept-ranges": "bytes", "content-type": _DEFAULT_CONTENT_TYPE}
        out: Dict[str, Any] = {"AcceptRanges": "bytes", "LastModified": _time(info.created_at_ms)}
        rng = params.get("Range")
        if rng is not None:
            first, last = self._range(rng, info.size)
            data = self._read("GetObject", bucket, key, first, last) if info.size else b""
            out["ContentRange"] = f"bytes {first}-{last}/{info.size}"
            status = 206
        else:
            data = self._read("GetObject", bucket, key)
            out["ETag"] = _etag(data)
            status = 200
        out.update(
            {
                "ContentLength": len(data),
                "ContentType": _DEFAULT_CONTENT_TYPE,
                "Metadata": {},
                "Body": StreamingBody(io.BytesIO(data), len(data)),
                "ResponseMetadata": _metadata(status, headers),
            }
        )
        return out

    def _range(self, rng: str, size: int) -> Tuple[int, int]:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if not m or (m.group(1) == "" and m.group(2) == ""):
            raise ParamValidationError(report=f"Invalid Range {rng!r}: use bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX")
        if m.group(1) == "":
            n = int(m.group(2))
            first, last = max(0, size - n), size - 1
        else:
            first = int(m.group(1))
            last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if first >= size or last < first:
            self._raise("GetObject", "InvalidRange", "The requested range is not satisfiable", 416, ActualObjectSize=str(size), RangeRequested=rng)
        return first, last

    def put_object(self, **params) -> Dict[str, Any]:
        _check("PutObject", params, ("Bucket", "Key"), ("Body", "ContentLength", "ContentMD5") + _IGNORED_PUT)
        bucket, key = params["Bucket"], params["Key"]
        body = params.get("Body", b"")
        if isinstance(body, str):
            data = body.encode()
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
        elif body is None:
            data = b""
        elif callable(getattr(body, "read", None)):
            chunk = body.read()
            data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        else:
            raise ParamValidationError(report=f"Invalid type for parameter Body, value: {body!r}, type: {type(body)}, valid types: bytes, bytearray, file-like object")
        md5 = params.get("ContentMD5")
        if md5 is not None:
            try:
                given = base64.b64decode(md5, validate=True)
            except (binascii.Error, ValueError):
                given = b""
            if given != hashlib.md5(data).digest():
                self._raise("PutObject", "BadDigest", "The Content-MD5 you specified did not match what we received.", 400)
        try:
            self._container(bucket).put(key, data)
        except nimbus.NimbusError as e:
            self._fail("PutObject", e, bucket, key)
        etag = _etag(data)
        return {"ETag": etag, "ResponseMetadata": _metadata(200, {"etag": etag})}

    def head_object(self, **params) -> Dict[str, Any]:
        _check("HeadObject", params, ("Bucket", "Key"), ("Range",) + _IGNORED_GET)
        bucket, key = params["Bucket"], params["Key"]
        info = self._info("HeadObject", bucket, key, head=True)
        etag = _etag(self._read("HeadObject", bucket, key, head=True))
        return {
            "AcceptRanges": "bytes",
            "LastModified": _time(info.created_at_ms),
            "ContentLength": info.size,
            "ETag": etag,
            "ContentType": _DEFAULT_CONTENT_TYPE,
            "Metadata": {},
            "ResponseMetadata": _metadata(200, {"etag": etag}),
        }

    def delete_object(self, **params) -> Dict[str, Any]:
        _check("DeleteObject", params, ("Bucket", "Key"), ("ExpectedBucketOwner", "VersionId", "MFA", "RequestPayer"))
        bucket, key = params["Bucket"], params["Key"]
        try:
            self._container(bucket).delete(key)
        except nimbus.NimbusError as e:
            self._fail("DeleteObject", e, bucket, key)
        return {"ResponseMetadata": _metadata(204)}

    def delete_objects(self, **params) -> Dict[str, Any]:
        _check("DeleteObjects", params, ("Bucket", "Delete"), ("ExpectedBucketOwner", "MFA", "RequestPayer", "ChecksumAlgorithm"))
        bucket = params["Bucket"]
        spec = params["Delete"]
        deleted: List[Dict[str, Any]] = []
        errors: List[Dict[str, Any]] = []
        for obj in spec.get("Objects", []):
            key = obj["Key"]
            try:
                self._container(bucket).delete(key)
                deleted.append({"Key": key})
            except nimbus.AccessDenied:
                errors.append({"Key": key, "Code": "AccessDenied", "Message": "Access Denied"})
            except nimbus.NoSuchContainer as e:
                self._fail("DeleteObjects", e, bucket)
            except nimbus.NimbusError as e:
                errors.append({"Key": key, "Code": "InternalError", "Message": str(e)})
        out: Dict[str, Any] = {"ResponseMetadata": _metadata(200)}
        if deleted and not spec.get("Quiet"):
            out["Deleted"] = deleted
        if errors:
            out["Errors"] = errors
        return out

    def list_objects_v2(self, **params) -> Dict[str, Any]:
        _check(
            "ListObjectsV2",
            params,
            ("Bucket",),
            ("Prefix", "MaxKeys", "ContinuationToken", "StartAfter", "Delimiter", "EncodingType",
             "FetchOwner", "ExpectedBucketOwner", "RequestPayer", "OptionalObjectAttributes"),
        )
        bucket = params["Bucket"]
        prefix = params.get("Prefix", "")
        delimiter = params.get("Delimiter", "")
        max_keys = min(int(params.get("MaxKeys", _MAX_KEYS)), _MAX_KEYS)
        token = params.get("ContinuationToken")
        start_after = params.get("StartAfter")
        after = start_after
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                self._raise("ListObjectsV2", "InvalidArgument", "The continuation token provided is incorrect", 400)
        container = self._container(bucket)
        contents: List[Dict[str, Any]] = []
        prefixes: List[str] = []
        truncated = False
        # Where the next page starts: past the last key, or past every key
        # under the last common prefix (so no prefix is listed twice).
        resume = None
        try:
            for name in container.list(prefix=prefix, start_after=after):
                common = None
                if delimiter:
                    cut = name.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = name[: cut + len(delimiter)]
                        if prefixes and prefixes[-1] == common:
                            continue
                if len(contents) + len(prefixes) >= max_keys:
                    truncated = True
                    break
                if common is not None:
                    prefixes.append(common)
                    resume = common + chr(0x10FFFF)
                    continue
                try:
                    info = container.info(name)
                except nimbus.NoSuchObject:
                    # Deleted since it was listed: a later listing would not show it.
                    continue
                contents.append(
                    {"Key": name, "LastModified": _time(info.created_at_ms), "Size": info.size, "StorageClass": "STANDARD"}
                )
                resume = name
        except nimbus.NimbusError as e:
            self._fail("ListObjectsV2", e, bucket)
        out: Dict[str, Any] = {
            "IsTruncated": truncated,
            "Name": bucket,
            "Prefix": prefix,
            "MaxKeys": max_keys,
            "KeyCount": len(contents) + len(prefixes),
            "ResponseMetadata": _metadata(200),
        }
        if contents:
            out["Contents"] = contents
        if delimiter:
            out["Delimiter"] = delimiter
            if prefixes:
                out["CommonPrefixes"] = [{"Prefix": p} for p in prefixes]
        if token is not None:
            out["ContinuationToken"] = token
        if start_after is not None:
            out["StartAfter"] = start_after
        if truncated and resume is not None:
            out["NextContinuationToken"] = base64.urlsafe_b64encode(resume.encode()).decode()
        return out

    def copy_object(self, **params) -> Dict[str, Any]:
        _check("CopyObject", params, ("Bucket", "CopySource", "Key"), ("MetadataDirective",) + _IGNORED_PUT)
        bucket, key = params["Bucket"], params["Key"]
        src_bucket, src_key = self._copy_source(params["CopySource"])
        try:
            nimbus.blob.copy(src_bucket, src_key, bucket, key)
        except nimbus.NoSuchObject as e:
            self._fail("CopyObject", e, src_bucket, src_key)
        except nimbus.NimbusError as e:
            self._fail("CopyObject", e, bucket, key)
        info = self._info("CopyObject", bucket, key)
        etag = _etag(self._read("CopyObject", bucket, key))
        return {
            "CopyObjectResult": {"ETag": etag, "LastModified": _time(info.created_at_ms)},
            "ResponseMetadata": _metadata(200),
        }

    def _copy_source(self, source: Any) -> Tuple[str, str]:
        if isinstance(source, dict):
            if "Bucket" not in source or "Key" not in source:
                raise ParamValidationError(report=f"CopySource dict needs Bucket and Key, got {sorted(source)}")
            return source["Bucket"], source["Key"]
        text = unquote(str(source)).lstrip("/")
        text = text.split("?versionId=")[0]
        bucket, sep, key = text.partition("/")
        if not sep or not bucket or not key:
            raise ParamValidationError(report=f'Invalid CopySource {source!r}: use "bucket/key" or {{"Bucket": ..., "Key": ...}}')
        return bucket, key

    def upload_fileobj(self, Fileobj, Bucket, Key, ExtraArgs=None, Callback=None, Config=None) -> None:
        data = Fileobj.read()
        self.put_object(Bucket=Bucket, Key=Key, Body=data, **(ExtraArgs or {}))
        if Callback:
            Callback(len(data))

    def download_fileobj(self, Bucket, Key, Fileobj, ExtraArgs=None, Callback=None, Config=None) -> None:
        data = self.get_object(Bucket=Bucket, Key=Key, **(ExtraArgs or {}))["Body"].read()
        Fileobj.write(data)
        if Callback:
            Callback(len(data))
