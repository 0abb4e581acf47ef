// Bytes in and out of `wasi:io/streams`, shared by the blob store and the
// HTTP handler.

const encoder = new TextEncoder();

// `blocking-write-and-flush` takes at most 4096 bytes per call (wasi:io).
const WRITE_CHUNK = 4096;
const READ_CHUNK = 64n * 1024n;

/// `value` as bytes: bytes as they are, a string as UTF-8, anything else
/// (but `undefined`) as JSON.
export function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (typeof value === "string") return encoder.encode(value);
  if (value === undefined) return new Uint8Array(0);
  return encoder.encode(JSON.stringify(value));
}

/// Everything `stream` yields until it closes; the stream is dropped.
export function readAll(stream) {
  const chunks = [];
  let total = 0;
  try {
    for (;;) {
      let chunk;
      try {
        chunk = stream.blockingRead(READ_CHUNK);
      } catch (e) {
        if (e?.payload?.tag === "closed") break;
        throw streamError(e);
      }
      chunks.push(chunk);
      total += chunk.length;
    }
  } finally {
    stream[Symbol.dispose]();
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/// Writes all of `bytes` to `stream` and flushes it (the stream stays
/// open: its owner drops it).
export function writeAll(stream, bytes) {
  try {
    for (let at = 0; at < bytes.length; at += WRITE_CHUNK) {
      stream.blockingWriteAndFlush(bytes.subarray(at, at + WRITE_CHUNK));
    }
    if (bytes.length === 0) stream.blockingFlush();
  } catch (e) {
    throw streamError(e);
  }
}

// A stream error's payload is `closed` or `last-operation-failed(error)`,
// whose resource can describe itself.
function streamError(e) {
  const p = e?.payload;
  if (p?.tag === "last-operation-failed") {
    let detail = "stream operation failed";
    try {
      detail = p.val.toDebugString();
    } catch {}
    return new Error(detail);
  }
  if (p?.tag === "closed") return new Error("the stream was closed");
  return e;
}
