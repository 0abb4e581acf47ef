"""Notes over HTTP, kept in a blob container and counted in a key-value
store through the Nimbus SDK (grant: blob_containers ["notes"], kv_stores
["notes"]):

    PUT    /<tenant>/<function>/notes/<name>   stores the body  → {"name", "bytes", "writes"}
    GET    /<tenant>/<function>/notes/<name>   the note, its write count in `x-note-writes`
    DELETE /<tenant>/<function>/notes/<name>   removes it and its count
    GET    /<tenant>/<function>/notes          {"title", "notes": [names]}
    POST   /<tenant>/<function>/notes/<name>?from=<container>/<key>
                                               copies an object of another container into the note

Configuration (optional): `title` names the list; `topic` is a queue each
write is announced on ({"name", "bytes", "writes"}, needs the topic grant).
"""

import json
from urllib.parse import parse_qs

import nimbus

# Neither calls the host: each opens on first use (this line runs at build).
notes = nimbus.blob.container("notes")
counts = nimbus.kv.open("notes")


def _name(request: nimbus.Request) -> str:
    """What follows `notes/` in the path, whatever the route's prefix."""
    inv = nimbus.context.current()
    path = request.path
    own = f"/{inv.tenant}/{inv.function_name}"
    if path.startswith(own + "/"):
        path = path[len(own) :]
    if path.rstrip("/") == "/notes":
        return ""
    if not path.startswith("/notes/") or len(path) == len("/notes/"):
        raise nimbus.InvalidInput(f"no note in {request.path!r}: use …/notes/<name>")
    return path[len("/notes/") :]


def _json(status: int, value) -> nimbus.HttpResponse:
    return nimbus.HttpResponse(status, {"content-type": "application/json"}, value)


def handle_http(request: nimbus.Request):
    name = _name(request)
    if not name:
        if request.method != "GET":
            return _json(405, {"error": "only GET lists the notes"})
        return _json(200, {"title": nimbus.config.get("title", "notes"), "notes": sorted(notes.list())})
    if request.method == "PUT":
        notes.put(name, request.body)
        writes = counts.increment(f"writes/{name}")
        nimbus.log.info(f"stored {name} ({len(request.body)} bytes, write {writes})", context="notes")
        written = {"name": name, "bytes": len(request.body), "writes": writes}
        topic = nimbus.config.get("topic")
        if topic:
            nimbus.messaging.publish(topic, written, metadata={"note": name})
        return _json(201 if writes == 1 else 200, written)
    if request.method == "POST":
        source = parse_qs(request.query_string).get("from", [""])[0]
        container, _, key = source.partition("/")
        if not container or not key:
            raise nimbus.InvalidInput("POST needs ?from=<container>/<key>")
        try:
            data = nimbus.blob.container(container).get(key)
        except nimbus.AccessDenied as e:
            return _json(403, {"error": str(e), "type": type(e).__name__})
        except nimbus.NotFound as e:
            return _json(404, {"error": str(e)})
        notes.put(name, data)
        writes = counts.increment(f"writes/{name}")
        return _json(200, {"name": name, "bytes": len(data), "writes": writes})
    if request.method == "GET":
        try:
            body = notes.get(name)
        except nimbus.NoSuchObject:
            return _json(404, {"error": f"no note {name!r}"})
        writes = int(counts.get_text(f"writes/{name}", "0"))
        return nimbus.HttpResponse(
            200, {"content-type": "text/plain; charset=utf-8", "x-note-writes": str(writes)}, body
        )
    if request.method == "DELETE":
        notes.delete(name)
        counts.delete(f"writes/{name}")
        return nimbus.HttpResponse(204, {}, b"")
    return _json(405, {"error": f"{request.method} is not supported"})
