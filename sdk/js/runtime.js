// What runs a user's module for each export: which style the module is
// written in, the call, and every way it can end turned into the WIT
// result (events) or the HTTP response.
//
// Styles, by what the module exports:
// - Lambda: `handler(event, context)` (async, or with a callback as third
//   parameter) gets AWS-shaped events (lambda.js) for events and HTTP.
// - Native: `handle(event)` gets the Nimbus event; `handleHttp(request)`
//   the HTTP request.
// - Raw: objects named after the WIT exports (`handler = { handle }`,
//   `incomingHandler = { handle }`) are passed through, so a module written
//   for componentize-js alone builds with the SDK too.

import {
  apiGatewayEvent,
  apiGatewayResponse,
  batchItemFailure,
  invocationInfo,
  lambdaContext,
  lambdaEnvironment,
  lambdaEvent,
} from "./lambda.js";
import { failResponse, prepareResponse, readRequest, sendResponse } from "./http.js";
import { fetch } from "./fetch.js";
import { EventResponse } from "./nimbus.js";
import { toBytes } from "./streams.js";

const decoder = new TextDecoder();

// Lambda code reads `process.env`; the component has no environment, so
// the SDK sets Lambda's own variables per invocation. `versions` stays
// empty so that libraries probing for Node.js do not find it.
globalThis.process ??= { env: {}, versions: {} };

// StarlingMonkey's own `fetch` is built out (`-d http`) and would abort the
// instance: this one goes through the host's outbound HTTP.
globalThis.fetch = fetch;

function fn(user, name) {
  const f = user[name];
  return typeof f === "function" ? f : undefined;
}

function raw(user, name) {
  const o = user[name];
  return o !== null && typeof o === "object" && typeof o.handle === "function" ? o : undefined;
}

// --- errors -----------------------------------------------------------------

/// "Name: message", the text of the invocation's guest error.
export function errorText(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  if (typeof e === "string") return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

// SpiderMonkey's stack ("fn@file:line:col" per line) in the V8 form Node.js
// users read ("    at fn (file:line:col)"), without the frames of
// componentize-js's generated bindings. (A V8 stack, under Node.js, is
// kept as it is.)
function stackText(e) {
  const head = errorText(e);
  if (!(e instanceof Error) || typeof e.stack !== "string") return head;
  const frames = e.stack
    .split("\n")
    .filter((l) => l.trim() !== "" && l !== head && !l.includes("initializer.js"))
    .map((l) => {
      if (/^\s+at /.test(l)) return l;
      const at = l.lastIndexOf("@");
      return at < 0 ? `    at ${l}` : `    at ${l.slice(0, at) || "<anonymous>"} (${l.slice(at + 1)})`;
    });
  return [head, ...frames].join("\n");
}

function isInvalidInput(e) {
  return e instanceof Error && e.name === "InvalidInput";
}

/// The WIT error for `e`, with its stack printed to stderr (the
/// invocation's logs).
function guestError(e) {
  console.error(stackText(e));
  return isInvalidInput(e)
    ? { tag: "invalid-input", val: e.message }
    : { tag: "failed", val: errorText(e) };
}

const err = (e) => ({ tag: "err", val: e });
const ok = (v) => ({ tag: "ok", val: v });

// --- events -----------------------------------------------------------------

/// The Nimbus event as a native handler sees it.
function nativeEvent(event) {
  return {
    id: event.id,
    source: event.source,
    type: event.type,
    subject: event.subject,
    time: event.time,
    contentType: event.contentType,
    attributes: Object.fromEntries(event.attributes),
    data: event.data,
    text: () => decoder.decode(event.data),
    json: () => JSON.parse(decoder.decode(event.data)),
  };
}

/// A native handler's result as the WIT response.
function eventResponse(r) {
  if (r instanceof EventResponse) return { contentType: r.contentType, data: r.data };
  if (r === undefined || r === null) return { contentType: undefined, data: new Uint8Array(0) };
  if (typeof r === "string") return { contentType: "text/plain; charset=utf-8", data: toBytes(r) };
  if (r instanceof Uint8Array || r instanceof ArrayBuffer || ArrayBuffer.isView(r)) {
    return { contentType: "application/octet-stream", data: toBytes(r) };
  }
  return { contentType: "application/json", data: toBytes(r) };
}

/// Calls a Lambda handler: async, sync, or with a callback (Node.js's
/// three-parameter form, and the legacy `context.done/succeed/fail`),
/// whichever settles first.
function callLambda(handler, event, info) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (e, result) => {
      if (settled) return;
      settled = true;
      if (e !== undefined && e !== null) reject(e);
      else resolve(result);
    };
    const context = lambdaContext(info, settle);
    globalThis.process.env = lambdaEnvironment(info, context);
    try {
      const returned =
        handler.length >= 3 ? handler(event, context, settle) : handler(event, context);
      if (handler.length < 3 || (returned && typeof returned.then === "function")) {
        Promise.resolve(returned).then(
          (r) => settle(null, r),
          (e) => settle(e ?? new Error("the handler's promise was rejected")),
        );
      }
    } catch (e) {
      settle(e ?? new Error("the handler threw"));
    }
  });
}

async function lambdaHandle(handler, event) {
  const info = invocationInfo();
  const result = await callLambda(handler, lambdaEvent(event, info), info);
  const failed = batchItemFailure(event, result);
  if (failed !== undefined) {
    console.error(failed);
    return err({ tag: "failed", val: failed });
  }
  return ok({ contentType: "application/json", data: toBytes(JSON.stringify(result ?? null)) });
}

/// The event export: `result<response, error>`, never a thrown error
/// (componentize-js would trap on one).
export async function handleEvent(user, event) {
  try {
    const passthrough = raw(user, "handler");
    if (passthrough) return await passthrough.handle(event);
    const lambda = fn(user, "handler");
    if (lambda) return await lambdaHandle(lambda, event);
    const native = fn(user, "handle");
    if (native) return ok(eventResponse(await native(nativeEvent(event))));
    return err({
      tag: "invalid-input",
      val: `this function handles no ${event.type} events: its module exports neither handler(event, context) nor handle(event)`,
    });
  } catch (e) {
    return err(guestError(e));
  }
}

// --- HTTP -------------------------------------------------------------------

/// Request headers: `get(name)` (values joined with ", "), `has`,
/// `getAll`, iteration over `[name, value]` pairs (names lower-case).
class RequestHeaders {
  constructor(list) {
    this.list = list;
  }
  get(name) {
    const vs = this.getAll(name);
    return vs.length === 0 ? null : vs.join(", ");
  }
  getAll(name) {
    const n = name.toLowerCase();
    return this.list.filter(([k]) => k === n).map(([, v]) => v);
  }
  has(name) {
    return this.getAll(name).length > 0;
  }
  entries() {
    return this.list[Symbol.iterator]();
  }
  [Symbol.iterator]() {
    return this.entries();
  }
}

/// The request as `handleHttp` sees it.
function nativeRequest(req) {
  return {
    method: req.method,
    url: `${req.scheme}://${req.authority}${req.pathWithQuery}`,
    path: req.path,
    query: new URLSearchParams(req.query),
    headers: new RequestHeaders(req.headers),
    body: req.body,
    text: () => decoder.decode(req.body),
    json: () => JSON.parse(decoder.decode(req.body)),
  };
}

function headerList(h) {
  if (h === undefined || h === null) return [];
  if (Array.isArray(h)) return h.map(([k, v]) => [k, String(v)]);
  if (typeof h.entries === "function" && !(h.constructor === Object)) {
    return Array.from(h.entries(), ([k, v]) => [k, String(v)]);
  }
  return Object.entries(h).map(([k, v]) => [k, String(v)]);
}

function withType(headers, type) {
  return headers.some(([k]) => k.toLowerCase() === "content-type")
    ? headers
    : [...headers, ["content-type", type]];
}

// `{status, headers, body}` is a response only with nothing else in it, so
// that data which happens to have a numeric `status` is sent as JSON.
const RESPONSE_KEYS = new Set(["status", "statusText", "headers", "body"]);

function isResponseSpec(r) {
  return (
    r !== null &&
    typeof r === "object" &&
    r.constructor === Object &&
    typeof r.status === "number" &&
    Object.keys(r).every((k) => RESPONSE_KEYS.has(k))
  );
}

/// A native HTTP handler's result as `{ status, headers, body }`.
async function nativeResponse(r) {
  if (typeof Response === "function" && r instanceof Response) {
    return {
      status: r.status,
      headers: Array.from(r.headers.entries()),
      body: new Uint8Array(await r.arrayBuffer()),
    };
  }
  if (isResponseSpec(r)) {
    const headers = headerList(r.headers);
    const body = r.body;
    if (body === undefined || body === null) return { status: r.status, headers, body: "" };
    if (typeof body === "string") {
      return { status: r.status, headers: withType(headers, "text/plain; charset=utf-8"), body };
    }
    if (body instanceof Uint8Array || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
      return { status: r.status, headers: withType(headers, "application/octet-stream"), body };
    }
    return { status: r.status, headers: withType(headers, "application/json"), body: JSON.stringify(body) };
  }
  if (r === undefined || r === null) return { status: 204, headers: [], body: "" };
  const { contentType, data } = eventResponse(r);
  return { status: 200, headers: [["content-type", contentType]], body: data };
}

/// An HTTP request to a module with only an event handler: the event the
/// gateway makes for event functions (`nimbus.http.request`).
function httpEvent(req, info) {
  const type = req.headers.find(([k]) => k === "content-type")?.[1];
  return {
    id: info.id,
    source: `/${info.tenant}/${info.functionName}`,
    type: "nimbus.http.request",
    subject: req.path,
    time: new Date().toISOString(),
    contentType: type,
    attributes: [["httpmethod", req.method]],
    data: req.body,
  };
}

async function respond(user, request) {
  const req = readRequest(request);
  const native = fn(user, "handleHttp");
  if (native) return nativeResponse(await native(nativeRequest(req)));
  const lambda = fn(user, "handler");
  if (lambda) {
    const info = invocationInfo();
    return apiGatewayResponse(await callLambda(lambda, apiGatewayEvent(req, info), info));
  }
  const handle = fn(user, "handle");
  if (handle) return nativeResponse(await handle(nativeEvent(httpEvent(req, invocationInfo()))));
  throw new Error(
    "this function handles no HTTP requests: its module exports neither handleHttp(request) nor handler(event, context)",
  );
}

/// The `wasi:http` export. A handler's exception ends the request with an
/// error (recorded as a guest error), its stack in the logs.
export async function handleRequest(user, request, responseOut) {
  const passthrough = raw(user, "incomingHandler");
  if (passthrough) return passthrough.handle(request, responseOut);
  let prepared;
  try {
    prepared = prepareResponse(await respond(user, request));
  } catch (e) {
    console.error(stackText(e));
    failResponse(responseOut, errorText(e));
    return;
  }
  sendResponse(responseOut, prepared);
}
