"""Blob containers (`wasi:blobstore`): the containers granted to the
function (`blob_containers` in its config), inside its tenant.

    import nimbus
    photos = nimbus.blob.container("photos")
    photos.put("a.txt", b"hello")
    data = photos.get("a.txt")
    for name in photos.list(prefix="2024/"):
        ...

`container` calls nothing: the container is looked up on its first use.
"""

import datetime
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Optional, Union

from componentize_py_types import Err
from wit_world.imports import blobstore, wasi_blobstore_types as types

from . import _streams
from .errors import AccessDenied, NoSuchContainer, NoSuchObject, ServiceError

Body = Union[bytes, bytearray, memoryview, str, BinaryIO]

# Names a listing asks the host for at once (its page is at most 999).
_LIST_PAGE = 999

# `get-data`'s end offset is inclusive and clamped to the object's size:
# this reads to the end.
_TO_END = 2**64 - 1


def _error(message: str, container: str, key: Optional[str] = None) -> Exception:
    """The exception for an error string of the host's blob store."""
    if message.startswith("permission denied"):
        return AccessDenied(f"blob container {container!r} is not granted to this function")
    if "does not exist in container" in message:
        return NoSuchObject(f"object {key!r} does not exist in blob container {container!r}")
    if message.startswith("container") and message.endswith("does not exist"):
        return NoSuchContainer(f"blob container {container!r} does not exist")
    what = f"blob container {container!r}" + (f", object {key!r}" if key is not None else "")
    return ServiceError(f"{what}: {message}")


def _body_bytes(body: Body) -> bytes:
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    read = getattr(body, "read", None)
    if callable(read):
        data = read()
        return data.encode() if isinstance(data, str) else bytes(data)
    raise TypeError(f"an object body is bytes, str or a file-like object, not {type(body).__name__}")


@dataclass
class ObjectInfo:
    """What the blob store knows of an object."""

    name: str
    container: str
    size: int
    #: When the object was last written, in ms since the Unix epoch.
    created_at_ms: int

    @property
    def last_modified(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.created_at_ms / 1000, tz=datetime.timezone.utc)


class Container:
    """One blob container."""

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a blob container name is a non-empty str, not {name!r}")
        self.name = name
        self._handle = None

    def __repr__(self) -> str:
        return f"nimbus.blob.Container({self.name!r})"

    def _c(self):
        if self._handle is None:
            try:
                self._handle = blobstore.get_container(self.name)
            except Err as e:
                raise _error(e.value, self.name) from None
        return self._handle

    def _call(self, key: Optional[str], f):
        c = self._c()
        try:
            return f(c)
        except Err as e:
            raise _error(e.value, self.name, key) from None

    def get(self, key: str, start: int = 0, end: Optional[int] = None) -> bytes:
        """The object's bytes (from `start` to `end`, inclusive, if given).
        Raises `NoSuchObject` if it is absent."""
        last = _TO_END if end is None else end

        def read(c):
            value = c.get_data(key, start, last)
            return _streams.read_all(types.IncomingValue.incoming_value_consume_async(value))

        return self._call(key, read)

    def put(self, key: str, body: Body) -> int:
        """Creates or replaces the object; returns the bytes written. It is
        visible (and its object-created event sent) once this returns."""
        data = _body_bytes(body)

        def write(c):
            value = types.OutgoingValue.new_outgoing_value()
            try:
                stream = value.outgoing_value_write_body()
            except Err:
                raise ServiceError(f"blob container {self.name!r}: no body stream") from None
            _streams.write_all(stream, data)
            c.write_data(key, value)
            types.OutgoingValue.finish(value)
            return len(data)

        return self._call(key, write)

    def delete(self, key: str) -> None:
        """Removes the object; nothing happens if it is absent."""
        self._call(key, lambda c: c.delete_object(key))

    def exists(self, key: str) -> bool:
        return self._call(key, lambda c: c.has_object(key))

    def __contains__(self, key: str) -> bool:
        return self.exists(key)

    def info(self, key: str) -> ObjectInfo:
        """The object's size and time. Raises `NoSuchObject` if absent."""
        m = self._call(key, lambda c: c.object_info(key))
        return ObjectInfo(name=m.name, container=m.container, size=m.size, created_at_ms=m.created_at)

    def list(self, prefix: str = "", start_after: Optional[str] = None) -> Iterator[str]:
        """Object names in lexicographic order, those starting with `prefix`
        and sorting after `start_after`."""
        names = self._call(None, lambda c: c.list_objects())
        with names:
            while True:
                try:
                    page, end = names.read_stream_object_names(_LIST_PAGE)
                except Err as e:
                    raise _error(e.value, self.name) from None
                for n in page:
                    if n.startswith(prefix) and (start_after is None or n > start_after):
                        yield n
                if end:
                    return

    def copy_to(self, key: str, dest: Union["Container", str], dest_key: Optional[str] = None) -> None:
        """Copies the object to `dest` (a container or its name) under
        `dest_key` (default: the same key)."""
        copy(self.name, key, dest if isinstance(dest, str) else dest.name, dest_key or key)


def container(name: str) -> Container:
    """The container `name` (looked up on first use)."""
    return Container(name)


def copy(src_container: str, src_key: str, dest_container: str, dest_key: str) -> None:
    """Copies an object, within a container or across two granted ones."""
    try:
        blobstore.copy_object(
            types.ObjectId(container=src_container, object=src_key),
            types.ObjectId(container=dest_container, object=dest_key),
        )
    except Err as e:
        message = e.value
        if "does not exist in container" in message:
            raise _error(message, src_container, src_key) from None
        # The host names the container it refused or could not find (the
        # source is checked first).
        named = dest_container if (f'"{dest_container}"' in message or f"`{dest_container}`" in message) else src_container
        raise _error(message, named) from None
