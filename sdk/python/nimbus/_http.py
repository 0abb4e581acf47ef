"""`wasi:http` requests in and responses out."""

import traceback
from typing import List, Tuple

from componentize_py_types import Err, Ok
from wit_world.imports import wasi_http_types as http

from . import _streams
from .types import Request

_METHODS = {
    http.Method_Get: "GET",
    http.Method_Head: "HEAD",
    http.Method_Post: "POST",
    http.Method_Put: "PUT",
    http.Method_Delete: "DELETE",
    http.Method_Connect: "CONNECT",
    http.Method_Options: "OPTIONS",
    http.Method_Trace: "TRACE",
    http.Method_Patch: "PATCH",
}

# Headers wasi:http refuses in a response (hop-by-hop), and the length,
# which the host sets from the body it sends.
_NOT_SENT = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "host",
    "content-length",
}


def read_request(request: "http.IncomingRequest") -> Request:
    method = request.method()
    name = method.value if isinstance(method, http.Method_Other) else _METHODS[type(method)]
    target = request.path_with_query() or "/"
    path, _, query = target.partition("?")
    with request.headers() as fields:
        header_list = [(k.lower(), v.decode("latin-1")) for k, v in fields.entries()]
    headers = {}
    for k, v in header_list:
        headers[k] = f"{headers[k]}, {v}" if k in headers else v
    if request.authority() and "host" not in headers:
        headers["host"] = request.authority()
        header_list.append(("host", request.authority()))
    body = request.consume()
    data = _streams.read_all(body.stream())
    http.IncomingBody.finish(body)
    return Request(method=name, path=path, query_string=query, headers=headers, body=data, header_list=header_list)


def send_response(out: "http.ResponseOutparam", status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
    """Sends the response. What fails before it is set raises (the caller
    can still answer with an error); after, the body is cut short."""
    if not 100 <= status <= 999:
        raise ValueError(f"invalid HTTP status code {status}")
    try:
        fields = http.Fields.from_list([(k, v.encode()) for k, v in headers if k.lower() not in _NOT_SENT])
    except Err as e:
        raise ValueError(f"a response header is not valid in HTTP ({e.value}): {headers}") from None
    response = http.OutgoingResponse(fields)
    response.set_status_code(status)
    outgoing = response.body()
    http.ResponseOutparam.set(out, Ok(response))
    try:
        _streams.write_all(outgoing.write(), body)
        http.OutgoingBody.finish(outgoing, None)
    except Exception:
        traceback.print_exc()


def send_error(out: "http.ResponseOutparam", message: str) -> None:
    """Ends the request with an error instead of a response: the host
    answers 502 and records the invocation as a guest error."""
    http.ResponseOutparam.set(out, Err(http.ErrorCode_InternalError(message)))
