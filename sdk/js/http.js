// `wasi:http` 0.2.12 requests read into plain objects and responses written
// from them, for the SDK's HTTP handlers (native `handleHttp` and Lambda's
// API Gateway v2 payload).

import {
  Fields,
  IncomingBody,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";

import { readAll, writeAll, toBytes } from "./streams.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/// The incoming request, read whole: `{ method, scheme, authority,
/// pathWithQuery, path, query, headers, body }`, where `headers` is a list
/// of `[lower-case name, value]` in arrival order and `body` the bytes.
export function readRequest(request) {
  const m = request.method();
  const method = m.tag === "other" ? m.val : m.tag.toUpperCase();
  const scheme = request.scheme();
  const pathWithQuery = request.pathWithQuery() ?? "/";
  const q = pathWithQuery.indexOf("?");
  const headers = request
    .headers()
    .entries()
    .map(([name, value]) => [name.toLowerCase(), decoder.decode(value)]);
  const incoming = request.consume();
  const body = readAll(incoming.stream());
  IncomingBody.finish(incoming);
  return {
    method,
    scheme: scheme === undefined ? "http" : scheme.tag === "other" ? scheme.val : scheme.tag.toLowerCase(),
    authority: request.authority() ?? "localhost",
    pathWithQuery,
    path: q < 0 ? pathWithQuery : pathWithQuery.slice(0, q),
    query: q < 0 ? "" : pathWithQuery.slice(q + 1),
    headers,
    body,
  };
}

/// Builds `{ status, headers, body }` (headers a list of `[name, value]`,
/// body bytes or a string) into a response ready for [`sendResponse`].
/// Everything the host could refuse is checked here, before the outparam is
/// set, so that a refusal can still end the request with an error.
export function prepareResponse({ status, headers, body }) {
  const bytes = toBytes(body);
  let fields;
  try {
    fields = Fields.fromList(headers.map(([k, v]) => [k, encoder.encode(String(v))]));
  } catch (e) {
    throw new Error(`invalid response header: ${describeHeaderError(e)}`);
  }
  const response = new OutgoingResponse(fields);
  try {
    response.setStatusCode(status);
  } catch {
    throw new Error(`invalid response status code ${status}`);
  }
  return { response, bytes };
}

/// Sends a prepared response through `responseOut`.
export function sendResponse(responseOut, { response, bytes }) {
  const outgoing = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  const stream = outgoing.write();
  writeAll(stream, bytes);
  stream[Symbol.dispose]();
  OutgoingBody.finish(outgoing, undefined);
}

/// Ends the request with a `wasi:http` error instead of a response: the
/// host records the invocation as a guest error with `message`.
export function failResponse(responseOut, message) {
  ResponseOutparam.set(responseOut, {
    tag: "err",
    val: { tag: "internal-error", val: message },
  });
}

function describeHeaderError(e) {
  const p = e?.payload;
  return p?.tag ?? String(e);
}
