// `fetch` over `wasi:http/outgoing-handler` 0.2.12. The component is built
// without StarlingMonkey's own HTTP support (`-d http`), whose `fetch`
// would then abort the instance; this one sends through the host, which
// lets a request reach only the function's granted hosts
// (`outbound_hosts`). Requests are sent and read whole; one at a time.

import { handle as send } from "wasi:http/outgoing-handler@0.2.12";
import { Fields, IncomingBody, OutgoingBody, OutgoingRequest } from "wasi:http/types@0.2.12";

import { readAll, toBytes, writeAll } from "./streams.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const METHODS = new Set(["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"]);
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 20;

/// Response headers (and request headers given as an object): `get(name)`
/// (values joined with ", "), `has`, `getSetCookie`, `forEach`, iteration
/// over `[name, value]` pairs with lower-case names.
export class FetchHeaders {
  constructor(init) {
    this.list = headerPairs(init).map(([k, v]) => [k.toLowerCase(), v]);
  }
  get(name) {
    const n = name.toLowerCase();
    const vs = this.list.filter(([k]) => k === n).map(([, v]) => v);
    return vs.length === 0 ? null : vs.join(", ");
  }
  has(name) {
    return this.get(name) !== null;
  }
  getSetCookie() {
    return this.list.filter(([k]) => k === "set-cookie").map(([, v]) => v);
  }
  forEach(f) {
    for (const [k, v] of this.list) f(v, k, this);
  }
  entries() {
    return this.list[Symbol.iterator]();
  }
  keys() {
    return this.list.map(([k]) => k)[Symbol.iterator]();
  }
  values() {
    return this.list.map(([, v]) => v)[Symbol.iterator]();
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

/// What `fetch` resolves to: the body read already, behind the methods of
/// the Fetch standard's `Response`.
export class FetchResponse {
  constructor(url, status, headers, bytes, redirected) {
    this.url = url;
    this.status = status;
    this.statusText = "";
    this.ok = status >= 200 && status < 300;
    this.redirected = redirected;
    this.headers = headers;
    this.bytesRead = bytes;
    this.bodyUsed = false;
  }
  #take() {
    if (this.bodyUsed) throw new TypeError("the response body was already read");
    this.bodyUsed = true;
    return this.bytesRead;
  }
  async arrayBuffer() {
    const b = this.#take();
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  }
  async bytes() {
    return this.#take();
  }
  async text() {
    return decoder.decode(this.#take());
  }
  async json() {
    return JSON.parse(await this.text());
  }
}

function headerPairs(h) {
  if (h === undefined || h === null) return [];
  if (Array.isArray(h)) return h.map(([k, v]) => [String(k), String(v)]);
  if (typeof h.entries === "function" && h.constructor !== Object) {
    return Array.from(h.entries(), ([k, v]) => [String(k), String(v)]);
  }
  return Object.entries(h).map(([k, v]) => [k, String(v)]);
}

// A request body and the content type it implies, as the Fetch standard
// extracts them.
function extractBody(body) {
  if (body === undefined || body === null) return [undefined, undefined];
  if (typeof body === "string") return [encoder.encode(body), "text/plain;charset=UTF-8"];
  if (body instanceof URLSearchParams) {
    return [encoder.encode(body.toString()), "application/x-www-form-urlencoded;charset=UTF-8"];
  }
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return [toBytes(body), undefined];
  throw new TypeError("fetch: this body type is not supported (use a string, bytes or URLSearchParams)");
}

function errorCode(e) {
  const p = e?.payload ?? e;
  if (p && typeof p === "object" && "tag" in p) {
    return p.val === undefined || typeof p.val === "object" ? p.tag : `${p.tag}: ${p.val}`;
  }
  return String(e?.message ?? e);
}

// One request and its whole response, or a TypeError naming the URL and the
// host's error code (a host that is not granted: `HTTP-request-denied`).
function exchange(url, method, headers, body) {
  const fail = (why) => new TypeError(`fetch ${url.href} failed: ${why}`);
  let fields;
  try {
    fields = Fields.fromList(headers.map(([k, v]) => [k.toLowerCase(), encoder.encode(v)]));
  } catch (e) {
    throw fail(`invalid header (${errorCode(e)})`);
  }
  const request = new OutgoingRequest(fields);
  const m = method.toLowerCase();
  request.setMethod(METHODS.has(m) ? { tag: m } : { tag: "other", val: method });
  request.setScheme({ tag: url.protocol === "https:" ? "HTTPS" : "HTTP" });
  request.setAuthority(url.host);
  request.setPathWithQuery(url.pathname + url.search);
  const outgoing = request.body();
  let future;
  try {
    future = send(request, undefined);
  } catch (e) {
    throw fail(errorCode(e));
  }
  // A request the host refuses (a host not granted) closes the body's
  // stream: the reason is the future's, so it is read before the write's.
  let writeError;
  if (body !== undefined) {
    const stream = outgoing.write();
    try {
      writeAll(stream, body);
    } catch (e) {
      writeError = e;
    }
    stream[Symbol.dispose]();
  }
  if (writeError === undefined) {
    try {
      OutgoingBody.finish(outgoing, undefined);
    } catch (e) {
      writeError = e;
    }
  } else {
    outgoing[Symbol.dispose]();
  }
  let got = future.get();
  while (got === undefined) {
    future.subscribe().block();
    got = future.get();
  }
  if (got.tag === "err" || got.val.tag === "err") {
    throw fail(got.tag === "err" ? "no response" : errorCode(got.val.val));
  }
  if (writeError !== undefined) throw fail(`sending the body: ${errorCode(writeError)}`);
  const response = got.val.val;
  const status = response.status();
  const list = response.headers().entries().map(([k, v]) => [k, decoder.decode(v)]);
  const incoming = response.consume();
  let bytes;
  try {
    bytes = readAll(incoming.stream());
  } catch (e) {
    throw fail(`reading the response: ${errorCode(e)}`);
  }
  IncomingBody.finish(incoming);
  return { status, headers: new FetchHeaders(list), bytes };
}

/// `fetch(url, { method, headers, body, redirect })` for http and https
/// URLs: redirects are followed (up to 20) unless `redirect` is "manual" or
/// "error"; the promise rejects with a TypeError on a network failure or a
/// denied host.
export async function fetch(input, init = {}) {
  let url = new URL(typeof input === "string" || input instanceof URL ? String(input) : input.url);
  let method = (init.method ?? input?.method ?? "GET").toUpperCase();
  let [body, type] = extractBody(init.body);
  let headers = headerPairs(init.headers ?? input?.headers);
  if (type !== undefined && !headers.some(([k]) => k.toLowerCase() === "content-type")) {
    headers.push(["content-type", type]);
  }
  for (let hops = 0; ; hops++) {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`fetch ${url.href} failed: only http and https URLs are supported`);
    }
    const r = exchange(url, method, headers, body);
    const location = r.headers.get("location");
    if (!REDIRECTS.has(r.status) || location === null || init.redirect === "manual") {
      return new FetchResponse(url.href, r.status, r.headers, r.bytes, hops > 0);
    }
    if (init.redirect === "error") throw new TypeError(`fetch ${url.href} failed: redirected`);
    if (hops === MAX_REDIRECTS) throw new TypeError(`fetch ${url.href} failed: too many redirects`);
    url = new URL(location, url);
    // 303, and 301/302 after a POST, continue as a GET without the body.
    if (r.status === 303 || ((r.status === 301 || r.status === 302) && method === "POST")) {
      method = "GET";
      body = undefined;
      headers = headers.filter(([k]) => !["content-type", "content-length"].includes(k.toLowerCase()));
    }
  }
}
