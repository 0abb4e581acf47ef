"""Key-value stores (`wasi:keyvalue`): the stores granted to the function
(`kv_stores` in its config), inside its tenant.

    import nimbus
    visits = nimbus.kv.open("visits")
    n = visits.increment("home")
    visits.set("last", b"...")

`open` calls nothing: the store is opened on its first use, so a module may
open its stores at import time (which runs when the component is built).
"""

from typing import Dict, Iterable, Iterator, Optional, Union

from componentize_py_types import Err
from wit_world.imports import atomics, batch, wasi_keyvalue_store as kv

from .errors import AccessDenied, NoSuchStore, ServiceError

Value = Union[bytes, bytearray, memoryview, str]


def _bytes(value: Value) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"a key-value value is bytes or str, not {type(value).__name__} "
        "(serialize it first, e.g. json.dumps)"
    )


def _error(store: str, e: Err) -> Exception:
    v = e.value
    if isinstance(v, kv.Error_AccessDenied):
        return AccessDenied(f"kv store {store!r} is not granted to this function")
    if isinstance(v, kv.Error_NoSuchStore):
        return NoSuchStore(f"kv store {store!r} does not exist")
    return ServiceError(f"kv store {store!r}: {getattr(v, 'value', v)}")


class Store:
    """One key-value store. Values are bytes (a `str` is stored as UTF-8)."""

    def __init__(self, name: str):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a kv store name is a non-empty str, not {name!r}")
        self.name = name
        self._bucket: Optional[kv.Bucket] = None

    def __repr__(self) -> str:
        return f"nimbus.kv.Store({self.name!r})"

    def _call(self, f, *args):
        try:
            if self._bucket is None:
                self._bucket = kv.open(self.name)
            return f(self._bucket, *args)
        except Err as e:
            raise _error(self.name, e) from None

    def get(self, key: str, default: Optional[bytes] = None) -> Optional[bytes]:
        """The value of `key`, or `default` when it is absent."""
        value = self._call(lambda b: b.get(key))
        return default if value is None else value

    def get_text(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The value of `key` decoded as UTF-8, or `default`."""
        value = self._call(lambda b: b.get(key))
        return default if value is None else value.decode()

    def set(self, key: str, value: Value) -> None:
        data = _bytes(value)
        self._call(lambda b: b.set(key, data))

    def delete(self, key: str) -> None:
        """Removes `key`; nothing happens if it is absent."""
        self._call(lambda b: b.delete(key))

    def exists(self, key: str) -> bool:
        return self._call(lambda b: b.exists(key))

    def __contains__(self, key: str) -> bool:
        return self.exists(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key (starting with `prefix`), page by page."""
        cursor = None
        while True:
            page = self._call(lambda b: b.list_keys(cursor))
            for k in page.keys:
                if k.startswith(prefix):
                    yield k
            if page.cursor is None:
                return
            cursor = page.cursor

    def increment(self, key: str, delta: int = 1) -> int:
        """Atomically adds `delta` to the counter at `key` (absent: 0) and
        returns the new value."""
        return self._call(lambda b: atomics.increment(b, key, delta))

    def get_many(self, keys: Iterable[str]) -> Dict[str, bytes]:
        """The values of the `keys` that exist."""
        found = self._call(lambda b: batch.get_many(b, list(keys)))
        return {k: v for k, v in (p for p in found if p is not None)}

    def set_many(self, items: Dict[str, Value]) -> None:
        pairs = [(k, _bytes(v)) for k, v in items.items()]
        self._call(lambda b: batch.set_many(b, pairs))

    def delete_many(self, keys: Iterable[str]) -> None:
        names = list(keys)
        self._call(lambda b: batch.delete_many(b, names))


def open(name: str) -> Store:
    """The store `name` (opened on first use)."""
    return Store(name)
