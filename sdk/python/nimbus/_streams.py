"""Reading and writing whole `wasi:io` streams."""

from componentize_py_types import Err
from wit_world.imports import streams

# What one `read` asks for; the host may return less.
_READ_CHUNK = 64 * 1024


def read_all(stream: "streams.InputStream") -> bytes:
    """Every byte left in `stream`, then drops it."""
    chunks = []
    with stream:
        while True:
            try:
                chunk = stream.blocking_read(_READ_CHUNK)
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise OSError(f"reading a stream failed: {e.value}") from None
            chunks.append(chunk)
    return b"".join(chunks)


def write_all(stream: "streams.OutputStream", data: bytes) -> None:
    """Writes all of `data` as the stream accepts it, flushes, and drops
    the stream (a child resource must go before its parent is finished)."""
    view = memoryview(data)
    with stream:
        offset = 0
        try:
            while offset < len(view):
                budget = stream.check_write()
                if budget == 0:
                    with stream.subscribe() as ready:
                        ready.block()
                    continue
                chunk = bytes(view[offset : offset + budget])
                stream.write(chunk)
                offset += len(chunk)
            stream.blocking_flush()
        except Err as e:
            raise OSError(f"writing a stream failed: {e.value}") from None
