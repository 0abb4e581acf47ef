"""What native handlers receive and return. Pure Python: nothing here
touches the host.

    def handle(event: nimbus.Event):          # every trigger
        return {"seen": event.type}

    def handle_http(request: nimbus.Request):  # HTTP routes
        return nimbus.HttpResponse(201, {"content-type": "text/plain"}, "made")
"""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs


@dataclass
class Event:
    """One CloudEvents-shaped event (`nimbus:function/types.event`)."""

    id: str
    source: str
    type: str
    subject: Optional[str] = None
    #: RFC 3339.
    time: Optional[str] = None
    content_type: Optional[str] = None
    attributes: Dict[str, str] = field(default_factory=dict)
    data: bytes = b""

    def text(self) -> str:
        """`data` decoded as UTF-8."""
        return self.data.decode()

    def json(self) -> Any:
        """`data` parsed as JSON."""
        return json.loads(self.data)


@dataclass
class Response:
    """An event handler's result, as the host gets it."""

    data: Union[bytes, str] = b""
    content_type: Optional[str] = None


@dataclass
class Request:
    """One HTTP request."""

    method: str
    #: The path the gateway routed, without the query.
    path: str
    #: The raw query string (no `?`).
    query_string: str
    #: Lower-case names; repeated headers joined with ", ".
    headers: Dict[str, str]
    body: bytes = b""
    #: Every header as received, in order.
    header_list: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def query(self) -> Dict[str, List[str]]:
        """The query parameters, each with its list of values."""
        return parse_qs(self.query_string, keep_blank_values=True)

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpResponse:
    """An HTTP handler's answer. `body` may be bytes, a str (UTF-8) or any
    JSON-serializable value (sent as application/json)."""

    status: int = 200
    headers: Union[Dict[str, str], List[Tuple[str, str]]] = field(default_factory=dict)
    body: Any = b""
