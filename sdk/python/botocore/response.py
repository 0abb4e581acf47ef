"""`StreamingBody`: the `Body` of a `get_object` answer."""

import io


class StreamingBody(io.IOBase):
    """The object's bytes, read with `.read()`, `.iter_chunks()` or
    `.iter_lines()` as botocore's body is."""

    _DEFAULT_CHUNK_SIZE = 1024

    def __init__(self, raw_stream, content_length):
        self._raw_stream = raw_stream
        self._content_length = content_length
        self._amount_read = 0

    def readable(self):
        return True

    def read(self, amt=None):
        chunk = self._raw_stream.read() if amt is None else self._raw_stream.read(amt)
        self._amount_read += len(chunk)
        return chunk

    def readlines(self):
        return self._raw_stream.readlines()

    def __iter__(self):
        return self.iter_chunks(self._DEFAULT_CHUNK_SIZE)

    def __next__(self):
        chunk = self.read(self._DEFAULT_CHUNK_SIZE)
        if chunk:
            return chunk
        raise StopIteration()

    next = __next__

    def iter_lines(self, chunk_size=_DEFAULT_CHUNK_SIZE, keepends=False):
        pending = b""
        for chunk in self.iter_chunks(chunk_size):
            lines = (pending + chunk).splitlines(True)
            for line in lines[:-1]:
                yield line.splitlines(keepends)[0]
            pending = lines[-1]
        if pending:
            yield pending.splitlines(keepends)[0]

    def iter_chunks(self, chunk_size=_DEFAULT_CHUNK_SIZE):
        while True:
            chunk = self.read(chunk_size)
            if chunk == b"":
                break
            yield chunk

    def tell(self):
        return self._raw_stream.tell()

    def close(self):
        self._raw_stream.close()

    def __repr__(self):
        return f"<botocore.response.StreamingBody object ({self._content_length} bytes)>"
