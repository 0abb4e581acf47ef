"""The componentize-py entry of every Python function built with the Nimbus
SDK: it exports `nimbus:function/handler` (events from triggers) and
`wasi:http/incoming-handler` (HTTP requests), imports the function's own
module (`app`, else `lambda_function`) and calls its handler.

componentize-py runs this module's top level when it builds the component
(the snapshot every instance starts from), so the handler is looked up and
checked then: a function that defines none fails its build, naming what to
define. Nothing here calls the host before an invocation.
"""

import codecs
import datetime
import importlib
import importlib.util
import json
import linecache
import os
import random
import sys
import time
import traceback
from typing import Any, Callable, Optional

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import nimbus_function_types as wit

import nimbus
from nimbus import _http, aws

# The component holds only the modules imported while it was built: one
# first imported at run time is not found. Load what the standard library
# imports lazily on common paths (socket and http host names, text codecs,
# strptime, what tracebacks are formatted with), and the SDK's boto3, so
# handlers may use them anywhere.
for _codec in ("idna", "punycode", "utf-16", "utf-32", "latin-1", "cp1252", "ascii"):
    codecs.lookup(_codec)
import _strptime  # noqa: E402,F401  (datetime.strptime)
import ast  # noqa: E402,F401  (traceback's carets)
import difflib  # noqa: E402,F401  (traceback's "Did you mean")
import tokenize  # noqa: E402,F401  (linecache)

try:
    import _suggestions  # noqa: F401  (traceback's "Did you mean", in C)
except ImportError:
    pass
import boto3  # noqa: E402,F401
import botocore.exceptions  # noqa: E402,F401

_MODULES = ("app", "lambda_function")


def _load() -> Any:
    for name in _MODULES:
        if importlib.util.find_spec(name) is not None:
            return importlib.import_module(name)
    raise ImportError(
        "a Nimbus Python function is a directory with app.py (or lambda_function.py); "
        "neither was found on the build path"
    )


def _function(module: Any, name: str) -> Optional[Callable]:
    f = getattr(module, name, None)
    return f if callable(f) else None


_USER = _load()
_LAMBDA = _function(_USER, "lambda_handler") or _function(_USER, "handler")
_HANDLE = _function(_USER, "handle")
_HANDLE_HTTP = _function(_USER, "handle_http")

if not (_LAMBDA or _HANDLE or _HANDLE_HTTP):
    raise TypeError(
        f"{_USER.__name__}.py defines no handler: define lambda_handler(event, context) "
        "(AWS Lambda style), or handle(event) for events and/or handle_http(request) for "
        "HTTP requests (Nimbus style)"
    )


def _freeze_linecache() -> None:
    """Tracebacks without files. At run time the function has no files
    (every path is refused, and counted as a denied call), so the sources
    tracebacks quote are the function's and the SDK's modules, read now,
    and linecache never looks on disk again."""
    roots = tuple(
        os.path.dirname(os.path.abspath(f)) + os.sep for f in (_USER.__file__, __file__) if f
    )
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py") or not path.startswith(roots):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines(True)
        except (OSError, UnicodeDecodeError):
            continue
        # mtime None: linecache.checkcache leaves the entry alone.
        linecache.cache[path] = (sum(map(len, lines)), None, lines, path)

    def no_files(filename, module_globals=None):
        return []

    linecache.updatecache = no_files
    linecache.lazycache = lambda filename, module_globals=None: False
    linecache.checkcache = lambda filename=None: None
    # The `~~~^^^` anchors under a traceback's line come from `ast.parse`
    # of a piece of it; a piece that does not parse raises a SyntaxError
    # that reads its "file" `<unknown>`, a file open. Plain `^^^` carets
    # need no parse.
    if hasattr(traceback, "_extract_caret_anchors_from_line_segment"):
        traceback._extract_caret_anchors_from_line_segment = lambda segment: None


def _warm_tracebacks() -> None:
    """Formats tracebacks once now, so whatever the formatting imports on
    first use (carets, suggestions) is in the snapshot."""
    for trouble in (lambda: {}["key"], lambda: _no_such_name, lambda: (1).no_such_attribute):  # noqa: F821
        try:
            trouble()
        except Exception as e:
            traceback.format_exception(e)


_warm_tracebacks()
_freeze_linecache()


def _begin() -> None:
    """Per invocation (each runs in a fresh copy of the build snapshot)."""
    # Lines reach the invocation's logs as they are printed, so what a
    # function printed before it timed out or trapped is not lost.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    # The snapshot froze `random`'s state at build time: without this every
    # invocation would draw the same numbers.
    random.seed()


def _lambda_environment(inv: Any, ctx: "aws.LambdaContext") -> None:
    """What the Lambda runtime puts in the environment (the host gives
    Python an empty one), for libraries that read it."""
    os.environ.update(
        {
            "AWS_REGION": aws.REGION,
            "AWS_DEFAULT_REGION": aws.REGION,
            "AWS_LAMBDA_FUNCTION_NAME": inv.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": inv.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": ctx.memory_limit_in_mb,
            "AWS_LAMBDA_LOG_GROUP_NAME": ctx.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": ctx.log_stream_name,
            "_HANDLER": f"{_USER.__name__}.{_LAMBDA.__name__}" if _LAMBDA else "",
        }
    )


def _lambda_context() -> "aws.LambdaContext":
    inv = nimbus.context.current()
    ctx = aws.LambdaContext(inv, nimbus.context.remaining_ms)
    _lambda_environment(inv, ctx)
    return ctx


def _described(e: BaseException) -> str:
    """`ExceptionType: message`, what Lambda reports as errorType and
    errorMessage."""
    message = str(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _out_of_memory() -> None:
    """Out of memory is the host's limit, not the function's error: stop
    the instance (a trap), so the invocation is recorded as having hit the
    memory limit."""
    try:
        traceback.print_exc()
        print("MemoryError: the function reached its memory limit", file=sys.stderr)
        _flush()
    finally:
        os.abort()


def _exit(e: SystemExit) -> None:
    """`sys.exit(n)` ends the invocation with that status, as a process
    would (the host records it)."""
    _flush()
    code = e.code
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    os._exit(status)


def _event(e: "wit.Event") -> "nimbus.Event":
    return nimbus.Event(
        id=e.id,
        source=e.source,
        type=e.type,
        subject=e.subject,
        time=e.time,
        content_type=e.content_type,
        attributes=dict(e.attributes),
        data=bytes(e.data),
    )


def _event_response(result: Any) -> "wit.Response":
    """A native handler's result as the invocation's response."""
    if isinstance(result, nimbus.Response):
        data = result.data.encode() if isinstance(result.data, str) else bytes(result.data)
        return wit.Response(content_type=result.content_type, data=data)
    if result is None:
        return wit.Response(content_type=None, data=b"")
    if isinstance(result, (bytes, bytearray, memoryview)):
        return wit.Response(content_type="application/octet-stream", data=bytes(result))
    if isinstance(result, str):
        return wit.Response(content_type="text/plain; charset=utf-8", data=result.encode())
    return _json_response(result)


def _json_response(result: Any) -> "wit.Response":
    return wit.Response(content_type="application/json", data=json.dumps(result).encode())


def _run_event(event: "nimbus.Event") -> "wit.Response":
    if _HANDLE is not None:
        return _event_response(_HANDLE(event))
    if _LAMBDA is None:
        raise nimbus.InvalidInput(
            f"this function handles HTTP requests only ({_USER.__name__}.py defines "
            f"handle_http, not handle or lambda_handler), not {event.type} events"
        )
    result = _LAMBDA(aws.lambda_event(event), _lambda_context())
    if event.type == "nimbus.queue.message" and aws.failed_batch_items(result, event.id):
        # One message per invocation: a batchItemFailures entry naming it
        # fails it, and the queue retries only that message.
        raise _BatchItemFailed(f"batchItemFailures names message {event.id}")
    return _json_response(result)


class _BatchItemFailed(Exception):
    pass


class Handler(exports.Handler):
    def handle(self, event: "wit.Event") -> "wit.Response":
        _begin()
        try:
            return _run_event(_event(event))
        except nimbus.InvalidInput as e:
            raise Err(wit.Error_InvalidInput(str(e)))
        except _BatchItemFailed as e:
            raise Err(wit.Error_Failed(str(e)))
        except MemoryError:
            _out_of_memory()
        except SystemExit as e:
            _exit(e)
            raise
        except Exception as e:
            traceback.print_exc()
            _flush()
            raise Err(wit.Error_Failed(_described(e)))
        finally:
            _flush()


def _http_as_event(request: "nimbus.Request") -> "nimbus.Event":
    """An HTTP request for a function with only `handle(event)`: the event
    the gateway gives an event function (the body is the data)."""
    inv = nimbus.context.current()
    return nimbus.Event(
        id=inv.id,
        source=f"/{inv.tenant}/{inv.function_name}",
        type="nimbus.http.request",
        subject=request.path,
        time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        content_type=request.headers.get("content-type"),
        attributes={"httpmethod": request.method},
        data=request.body,
    )


def _http_response(result: Any):
    """A native HTTP handler's result → (status, headers, body)."""
    if isinstance(result, nimbus.HttpResponse):
        headers = list(result.headers.items()) if isinstance(result.headers, dict) else list(result.headers)
        headers = [(str(k).lower(), str(v)) for k, v in headers]
        body = result.body
        if isinstance(body, str):
            data = body.encode()
            default = "text/plain; charset=utf-8"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            data = bytes(body)
            default = "application/octet-stream"
        elif body is None:
            data, default = b"", None
        else:
            data, default = json.dumps(body).encode(), "application/json"
        if data and default and not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", default))
        return int(result.status), headers, data
    r = _event_response(result)
    headers = [("content-type", r.content_type)] if r.content_type else []
    return 200, headers, r.data


def _run_http(request: "nimbus.Request"):
    if _HANDLE_HTTP is not None:
        return _http_response(_HANDLE_HTTP(request))
    if _LAMBDA is not None:
        inv = nimbus.context.current()
        event = aws.http_event(request, inv.id, inv.tenant, inv.function_name, int(time.time() * 1000))
        return aws.http_response(_LAMBDA(event, _lambda_context()))
    r = _event_response(_HANDLE(_http_as_event(request)))
    return 200, [("content-type", r.content_type)] if r.content_type else [], r.data


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out) -> None:
        _begin()
        try:
            status, headers, body = _run_http(_http.read_request(request))
        except nimbus.InvalidInput as e:
            status, headers, body = 400, [("content-type", "text/plain; charset=utf-8")], str(e).encode()
        except MemoryError:
            _out_of_memory()
        except SystemExit as e:
            _exit(e)
            raise
        except Exception as e:
            traceback.print_exc()
            _flush()
            _http.send_error(response_out, _described(e))
            return
        try:
            _http.send_response(response_out, status, headers, body)
        except Exception as e:
            # A header wasi:http refuses, or the connection went away.
            traceback.print_exc()
            _http.send_error(response_out, _described(e))
        finally:
            _flush()
