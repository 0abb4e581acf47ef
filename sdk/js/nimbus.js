// The Nimbus SDK for JavaScript functions: `import { kv, blob, messaging,
// config, log, context } from "nimbus"`. A thin layer over the WIT imports
// of the `nimbus:function/app` world, which componentize-js exposes as
// modules named by their interfaces. What it adds: strings and JSON where
// the interfaces take bytes, numbers where they take u64 (BigInt), and
// errors that name the store, container or topic they concern.

import * as invocation from "nimbus:function/context@0.1.0";
import * as kvStore from "wasi:keyvalue/store@0.2.0-draft";
import * as kvAtomics from "wasi:keyvalue/atomics@0.2.0-draft";
import * as kvBatch from "wasi:keyvalue/batch@0.2.0-draft";
import * as blobstore from "wasi:blobstore/blobstore@0.2.0-draft";
import { IncomingValue, OutgoingValue } from "wasi:blobstore/types@0.2.0-draft";
import * as configStore from "wasi:config/store@0.2.0-rc.1";
import * as logging from "wasi:logging/logging@0.1.0-draft";
import { Client, Message } from "wasmcloud:messaging/types@0.3.0";
import * as producer from "wasmcloud:messaging/producer@0.3.0";

import { readAll, writeAll, toBytes } from "./streams.js";

const decoder = new TextDecoder();

/// A failure of one of the services, naming what it concerns: `service` is
/// "kv", "blob", "messaging" or "config"; `resource` the store, container,
/// object or topic; `code` a stable word ("access-denied",
/// "no-such-store", "no-such-container", "no-such-object", "other", ...).
export class NimbusError extends Error {
  constructor(service, resource, code, detail) {
    super(`${describe(service, resource)}: ${detail}`);
    this.name = "NimbusError";
    this.service = service;
    this.resource = resource;
    this.code = code;
  }
}

function describe(service, resource) {
  const what = {
    kv: "key-value store",
    blob: "blob container",
    messaging: "topic",
    config: "config key",
  }[service];
  return `${what} ${JSON.stringify(resource)}`;
}

/// Thrown by an event handler (native or Lambda style) to reject its event
/// as malformed: the invocation ends with the guest error `invalid-input`,
/// which is final (a queue message is not retried).
export class InvalidInput extends Error {
  constructor(message) {
    super(message);
    this.name = "InvalidInput";
  }
}

/// What a native `handle(event)` may return to set the response's media
/// type; a plain string is `text/plain`, bytes `application/octet-stream`,
/// anything else JSON.
export class EventResponse {
  constructor(data, contentType) {
    this.data = toBytes(data);
    this.contentType = contentType;
  }
}

// The payload of a WIT `err`: componentize-js throws it wrapped in an Error
// whose `payload` holds the variant (or the string, for blobstore).
function payload(e) {
  return e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
}

// --- context -------------------------------------------------------------

/// This invocation: `{ id, tenant, functionName, functionVersion,
/// memoryLimitBytes, timeoutMs }` (`id` is the usage record's invocation id).
export function context() {
  const c = invocation.current();
  return {
    id: c.id,
    tenant: c.tenant,
    functionName: c.functionName,
    functionVersion: c.functionVersion,
    memoryLimitBytes: Number(c.memoryLimitBytes),
    timeoutMs: Number(c.timeoutMs),
  };
}

/// Milliseconds left before the invocation's deadline, from the host's
/// clock (0 once passed).
export function remainingMs() {
  return Number(invocation.remainingMs());
}

// --- key-value -------------------------------------------------------------

function kvError(store, e) {
  const p = payload(e);
  if (p && typeof p === "object" && "tag" in p) {
    const detail = {
      "no-such-store": "no such store",
      "access-denied": "access denied (the store is not granted to this function)",
    }[p.tag] ?? String(p.val);
    return new NimbusError("kv", store, p.tag, detail);
  }
  return e instanceof Error ? e : new NimbusError("kv", store, "other", String(p));
}

function kvCall(store, f) {
  try {
    return f();
  } catch (e) {
    throw kvError(store, e);
  }
}

/// A key-value store granted to the function (`kv_stores`).
export class Store {
  /// Use `kv.open(name)`.
  constructor(name, bucket) {
    this.name = name;
    this.bucket = bucket;
  }

  /// The value's bytes, or `undefined` when the key is absent.
  get(key) {
    return kvCall(this.name, () => this.bucket.get(key));
  }

  /// The value as UTF-8 text, or `undefined`.
  getText(key) {
    const v = this.get(key);
    return v === undefined ? undefined : decoder.decode(v);
  }

  /// The value parsed as JSON, or `undefined`.
  getJson(key) {
    const v = this.getText(key);
    return v === undefined ? undefined : JSON.parse(v);
  }

  /// Stores `value`: bytes as they are, a string as UTF-8, anything else as
  /// JSON.
  set(key, value) {
    const bytes = toBytes(value);
    kvCall(this.name, () => this.bucket.set(key, bytes));
  }

  delete(key) {
    kvCall(this.name, () => this.bucket.delete(key));
  }

  exists(key) {
    return kvCall(this.name, () => this.bucket.exists(key));
  }

  /// Every key, page by page.
  *keys() {
    let cursor = undefined;
    do {
      const page = kvCall(this.name, () => this.bucket.listKeys(cursor));
      yield* page.keys;
      cursor = page.cursor;
    } while (cursor !== undefined);
  }

  /// Adds `delta` to the counter at `key` atomically (a missing key counts
  /// from 0) and returns the new value.
  increment(key, delta = 1) {
    return Number(kvCall(this.name, () => kvAtomics.increment(this.bucket, key, BigInt(delta))));
  }

  /// A Map of the keys that exist to their bytes.
  getMany(keys) {
    const found = kvCall(this.name, () => kvBatch.getMany(this.bucket, keys));
    return new Map(found.filter((kv) => kv !== undefined));
  }

  /// Stores every `[key, value]` of `entries` (an iterable or a plain object).
  setMany(entries) {
    const pairs = Array.from(
      Symbol.iterator in Object(entries) ? entries : Object.entries(entries),
      ([k, v]) => [k, toBytes(v)],
    );
    kvCall(this.name, () => kvBatch.setMany(this.bucket, pairs));
  }

  deleteMany(keys) {
    kvCall(this.name, () => kvBatch.deleteMany(this.bucket, Array.from(keys)));
  }
}

export const kv = {
  /// Opens the store `name`; a store not granted to the function fails
  /// with code "access-denied".
  open(name) {
    return new Store(name, kvCall(name, () => kvStore.open(name)));
  },
};

// --- blob store ------------------------------------------------------------

// Blobstore errors are strings; the host's wording tells them apart.
function blobError(container, e) {
  if (e instanceof NimbusError) return e;
  const p = payload(e);
  const detail = typeof p === "string" ? p : e instanceof Error ? e.message : String(p);
  let code = "other";
  if (/not granted|permission denied/i.test(detail)) code = "access-denied";
  else if (/^object .* does not exist/.test(detail)) code = "no-such-object";
  else if (/^container .* does not exist/.test(detail)) code = "no-such-container";
  return new NimbusError("blob", container, code, detail);
}

function blobCall(container, f) {
  try {
    return f();
  } catch (e) {
    throw blobError(container, e);
  }
}

/// A blob container granted to the function (`blob_containers`).
export class Container {
  /// Use `blob.container(name)`.
  constructor(name, handle) {
    this.name = name;
    this.handle = handle;
  }

  /// The object's bytes; a missing object fails with code "no-such-object".
  get(key) {
    const { size } = this.info(key);
    if (size === 0) return new Uint8Array(0);
    return blobCall(this.name, () => {
      // get-data's end offset is inclusive.
      const value = this.handle.getData(key, 0n, BigInt(size - 1));
      return readAll(IncomingValue.incomingValueConsumeAsync(value));
    });
  }

  getText(key) {
    return decoder.decode(this.get(key));
  }

  getJson(key) {
    return JSON.parse(this.getText(key));
  }

  /// Writes the object (replacing any previous version): bytes as they
  /// are, a string as UTF-8, anything else as JSON.
  put(key, data) {
    const bytes = toBytes(data);
    blobCall(this.name, () => {
      const value = OutgoingValue.newOutgoingValue();
      const body = value.outgoingValueWriteBody();
      writeAll(body, bytes);
      // The stream is a child of the value: it goes before `finish`.
      body[Symbol.dispose]();
      this.handle.writeData(key, value);
      OutgoingValue.finish(value);
    });
  }

  has(key) {
    return blobCall(this.name, () => this.handle.hasObject(key));
  }

  /// `{ key, container, size, createdAt }` (`createdAt` a Date).
  info(key) {
    const m = blobCall(this.name, () => this.handle.objectInfo(key));
    return {
      key: m.name,
      container: m.container,
      size: Number(m.size),
      createdAt: new Date(Number(m.createdAt)),
    };
  }

  delete(key) {
    blobCall(this.name, () => this.handle.deleteObject(key));
  }

  /// Object names in name order, optionally only those starting with
  /// `prefix`.
  *list(prefix = "") {
    const names = blobCall(this.name, () => this.handle.listObjects());
    for (;;) {
      const [page, end] = blobCall(this.name, () => names.readStreamObjectNames(1000n));
      for (const n of page) if (n.startsWith(prefix)) yield n;
      if (end) return;
    }
  }

  /// Deletes every object.
  clear() {
    blobCall(this.name, () => this.handle.clear());
  }
}

export const blob = {
  /// The existing container `name`.
  container(name) {
    return new Container(name, blobCall(name, () => blobstore.getContainer(name)));
  },

  /// Creates the container `name` (it must be granted).
  create(name) {
    return new Container(name, blobCall(name, () => blobstore.createContainer(name)));
  },

  exists(name) {
    return blobCall(name, () => blobstore.containerExists(name));
  },

  delete(name) {
    blobCall(name, () => blobstore.deleteContainer(name));
  },

  /// Copies `{container, key}` to `{container, key}` inside the host.
  copy(from, to) {
    blobCall(from.container, () =>
      blobstore.copyObject(
        { container: from.container, object: from.key },
        { container: to.container, object: to.key },
      ),
    );
  },

  move(from, to) {
    blobCall(from.container, () =>
      blobstore.moveObject(
        { container: from.container, object: from.key },
        { container: to.container, object: to.key },
      ),
    );
  },
};

// --- messaging -------------------------------------------------------------

let client;

export const messaging = {
  /// Publishes `body` (bytes, a string, or JSON for anything else) to
  /// `topic`, a durable queue granted to the function (`topics`).
  /// `options.contentType` and `options.metadata` (an object of strings)
  /// travel with the message.
  publish(topic, body, options = {}) {
    try {
      client ??= Client.connect("nimbus");
      const message = new Message(toBytes(body));
      const contentType =
        options.contentType ??
        (typeof body === "string"
          ? "text/plain; charset=utf-8"
          : body instanceof Uint8Array || body instanceof ArrayBuffer
            ? undefined
            : "application/json");
      if (contentType !== undefined) message.setContentType(contentType);
      for (const [k, v] of Object.entries(options.metadata ?? {})) {
        message.addMetadata(k, String(v));
      }
      producer.send(client, topic, message);
    } catch (e) {
      const p = payload(e);
      if (p && typeof p === "object" && "tag" in p) {
        const detail = p.tag === "timeout" ? "timed out" : `${p.tag}: ${p.val}`;
        throw new NimbusError("messaging", topic, p.tag, detail);
      }
      throw e;
    }
  },
};

// --- config ----------------------------------------------------------------

function configCall(key, f) {
  try {
    return f();
  } catch (e) {
    const p = payload(e);
    if (p && typeof p === "object" && "tag" in p) {
      throw new NimbusError("config", key, p.tag, String(p.val));
    }
    throw e;
  }
}

export const config = {
  /// The value of `key` in the function's config, or `undefined`.
  get(key) {
    return configCall(key, () => configStore.get(key));
  },

  /// Every key of the function's config, as an object.
  getAll() {
    return Object.fromEntries(configCall("*", () => configStore.getAll()));
  },
};

// --- logging ---------------------------------------------------------------

function logAt(level) {
  return (message, context = "") => logging.log(level, String(context), String(message));
}

/// Structured log entries (`wasi:logging`), kept with the invocation's logs
/// beside what `console.log` prints: `log.info("message", "context")`.
export const log = {
  trace: logAt("trace"),
  debug: logAt("debug"),
  info: logAt("info"),
  warn: logAt("warn"),
  error: logAt("error"),
  critical: logAt("critical"),
};
