// AWS Lambda compatibility: Nimbus's CloudEvents-shaped events in the shapes
// AWS services deliver to Lambda (S3 notification, SQS, EventBridge
// scheduled event, API Gateway v2 / function-URL payload), the Lambda
// `context` object, and a handler's result mapped back. The host stays
// CloudEvents; all of this happens in the guest. The Python SDK
// (`sdk/python`) builds the same shapes.

import * as invocation from "nimbus:function/context@0.1.0";

import { md5Hex } from "./md5.js";

const decoder = new TextDecoder();

/// What Nimbus reports as the AWS region (`awsRegion`, ARNs, `AWS_REGION`).
export const REGION = "nimbus";
/// The ARN partition of Nimbus resources (`arn:nimbus:…`).
export const PARTITION = "nimbus";

/// The invocation, read once per call of the handler.
export function invocationInfo() {
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

/// The Lambda `context` a handler receives as its second argument.
export function lambdaContext(info, settle) {
  const arn = `arn:${PARTITION}:lambda:${REGION}:${info.tenant}:function:${info.functionName}`;
  const day = new Date().toISOString().slice(0, 10).replaceAll("-", "/");
  return {
    awsRequestId: info.id,
    functionName: info.functionName,
    functionVersion: info.functionVersion,
    invokedFunctionArn: arn,
    // A string, as the Node.js runtime gives it (from
    // AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
    memoryLimitInMB: String(Math.floor(info.memoryLimitBytes / (1024 * 1024))),
    logGroupName: `/nimbus/${info.tenant}/${info.functionName}`,
    logStreamName: `${day}/[${info.functionVersion}]${info.id}`,
    tenant: info.tenant,
    identity: undefined,
    clientContext: undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Number(invocation.remainingMs()),
    // The legacy completion calls (Node.js 0.10 style), still accepted.
    done: (err, result) => settle(err, result),
    succeed: (result) => settle(null, result),
    fail: (err) => settle(err ?? new Error("context.fail called")),
  };
}

/// `process.env` as Lambda's Node.js runtime sets it for this invocation.
/// (Function configuration is `config.get(key)` from "nimbus", not the
/// environment: the component has none.)
export function lambdaEnvironment(info, ctx) {
  return {
    AWS_LAMBDA_FUNCTION_NAME: info.functionName,
    AWS_LAMBDA_FUNCTION_VERSION: info.functionVersion,
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: ctx.memoryLimitInMB,
    AWS_LAMBDA_LOG_GROUP_NAME: ctx.logGroupName,
    AWS_LAMBDA_LOG_STREAM_NAME: ctx.logStreamName,
    AWS_REGION: REGION,
    AWS_DEFAULT_REGION: REGION,
  };
}

/// An object key URL-encoded the way S3 event notifications encode it:
/// form encoding (a space is `+`), `/` kept, every other byte outside
/// `A-Z a-z 0-9 - _ . ~` as `%XX` (what Python's `quote_plus(key, safe="/")`
/// gives). Lambda code decodes it with
/// `decodeURIComponent(key.replace(/\+/g, " "))`.
export function s3Key(key) {
  let out = "";
  for (const byte of new TextEncoder().encode(key)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~/]/.test(c)) out += c;
    else if (c === " ") out += "+";
    else out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function attrs(event) {
  return Object.fromEntries(event.attributes);
}

function json(event) {
  try {
    return JSON.parse(decoder.decode(event.data));
  } catch {
    return {};
  }
}

/// `nimbus.object.created` → an S3 `ObjectCreated:Put` notification.
export function s3Event(event, info) {
  const a = attrs(event);
  const container = a.container;
  const etag = a.etag ?? "";
  return {
    Records: [
      {
        eventVersion: "2.1",
        eventSource: "aws:s3",
        awsRegion: REGION,
        eventTime: event.time,
        eventName: "ObjectCreated:Put",
        userIdentity: { principalId: info.tenant },
        requestParameters: { sourceIPAddress: "" },
        responseElements: { "x-amz-request-id": event.id },
        s3: {
          s3SchemaVersion: "1.0",
          configurationId: "nimbus-object-trigger",
          bucket: {
            name: container,
            ownerIdentity: { principalId: info.tenant },
            arn: `arn:${PARTITION}:s3:::${container}`,
          },
          object: {
            key: s3Key(a.key ?? event.subject ?? ""),
            size: Number(a.size ?? json(event).size ?? 0),
            eTag: etag,
            // Increases with each version of a key, as S3's does: the etag
            // is a UUIDv7, whose hex starts with its timestamp.
            sequencer: etag.replaceAll("-", "").toUpperCase(),
          },
        },
      },
    ],
  };
}

// Attributes the queue trigger sets itself; the rest are the message's
// metadata (SQS message attributes).
const QUEUE_ATTRIBUTES = new Set(["queue", "receivecount"]);

/// `nimbus.queue.message` → an SQS event with one record.
export function sqsEvent(event, info) {
  const a = attrs(event);
  const body = decoder.decode(event.data);
  const messageAttributes = {};
  for (const [k, v] of event.attributes) {
    if (!QUEUE_ATTRIBUTES.has(k)) {
      messageAttributes[k] = {
        stringValue: v,
        stringListValues: [],
        binaryListValues: [],
        dataType: "String",
      };
    }
  }
  const sent = event.time ? Date.parse(event.time) : 0;
  const receives = a.receivecount ?? "1";
  return {
    Records: [
      {
        messageId: event.id,
        receiptHandle: btoa(`${a.queue}:${event.id}:${receives}`),
        body,
        attributes: {
          ApproximateReceiveCount: receives,
          SentTimestamp: String(Number.isNaN(sent) ? 0 : sent),
          SenderId: info.tenant,
        },
        messageAttributes,
        md5OfBody: md5Hex(event.data),
        eventSource: "aws:sqs",
        eventSourceARN: `arn:${PARTITION}:sqs:${REGION}:${info.tenant}:${a.queue}`,
        awsRegion: REGION,
      },
    ],
  };
}

/// `nimbus.schedule.tick` → an EventBridge "Scheduled Event".
export function scheduledEvent(event, info) {
  // EventBridge writes times to the second.
  const ms = event.time ? Date.parse(event.time) : 0;
  const time = new Date(Number.isNaN(ms) ? 0 : ms - (ms % 1000)).toISOString().replace(".000Z", "Z");
  return {
    version: "0",
    id: event.id,
    "detail-type": "Scheduled Event",
    source: "aws.events",
    account: info.tenant,
    time,
    region: REGION,
    resources: [`arn:${PARTITION}:events:${REGION}:${info.tenant}:rule/${info.functionName}`],
    detail: {},
  };
}

// CloudEvents' own attribute names: extension attributes of these names
// would overwrite them.
const CORE = new Set(["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "data_base64"]);

/// Any other event in the CloudEvents JSON format: data parsed when its
/// media type is JSON, text as a string, other bytes as `data_base64`;
/// extension attributes as top-level members.
export function cloudEvent(event) {
  const out = { specversion: "1.0", id: event.id, source: event.source, type: event.type };
  if (event.subject !== undefined) out.subject = event.subject;
  if (event.time !== undefined) out.time = event.time;
  if (event.contentType !== undefined) out.datacontenttype = event.contentType;
  for (const [k, v] of event.attributes) if (!CORE.has(k)) out[k] = v;
  if (event.data.length > 0) {
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(event.data);
      out.data = (event.contentType ?? "").toLowerCase().includes("json") ? JSON.parse(text) : text;
    } catch {
      out.data_base64 = base64(event.data);
    }
  }
  return out;
}

/// The Lambda event for a Nimbus event: the AWS shape for the event types
/// that have one, else the CloudEvent itself.
export function lambdaEvent(event, info) {
  switch (event.type) {
    case "nimbus.object.created":
      return s3Event(event, info);
    case "nimbus.queue.message":
      return sqsEvent(event, info);
    case "nimbus.schedule.tick":
      return scheduledEvent(event, info);
  }
  return cloudEvent(event);
}

/// For an SQS event: the failure a returned `batchItemFailures` reports for
/// this message, or undefined.
/// An entry without an id fails the message too: Lambda takes one as
/// failing the whole batch.
export function batchItemFailure(event, result) {
  if (event.type !== "nimbus.queue.message") return undefined;
  const failures = result?.batchItemFailures;
  if (!Array.isArray(failures)) return undefined;
  return failures.some((f) => !f?.itemIdentifier || f.itemIdentifier === event.id)
    ? `message ${event.id} reported in batchItemFailures`
    : undefined;
}

// Media types whose bodies API Gateway passes as text (no type: text too).
const TEXT_TYPES = ["text/", "application/json", "application/xml", "application/javascript",
  "application/x-www-form-urlencoded", "+json", "+xml", "application/yaml"];

function isText(contentType) {
  const ct = contentType.toLowerCase().split(";")[0].trim();
  return ct === "" || TEXT_TYPES.some((t) => ct.includes(t));
}

function apiGatewayTime(ms) {
  const d = new Date(ms);
  const months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");
  const p = (n) => String(n).padStart(2, "0");
  return (
    `${p(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

/// An HTTP request (read by `http.readRequest`) → the API Gateway v2 /
/// function-URL payload (version 2.0).
export function apiGatewayEvent(req, info) {
  const headers = {};
  const cookies = [];
  for (const [name, value] of req.headers) {
    if (name === "cookie") {
      cookies.push(...value.split(";").map((c) => c.trim()).filter((c) => c !== ""));
      continue;
    }
    headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  const event = {
    version: "2.0",
    routeKey: "$default",
    rawPath: req.path,
    rawQueryString: req.query,
  };
  if (cookies.length > 0) event.cookies = cookies;
  event.headers = headers;
  if (req.query !== "") {
    const params = {};
    for (const [k, v] of new URLSearchParams(req.query)) {
      params[k] = k in params ? `${params[k]},${v}` : v;
    }
    event.queryStringParameters = params;
  }
  const now = Date.now();
  const domain = headers.host ?? "";
  event.requestContext = {
    accountId: info.tenant,
    apiId: info.functionName,
    domainName: domain,
    domainPrefix: domain.split(".")[0].split(":")[0],
    http: {
      method: req.method,
      path: req.path,
      protocol: "HTTP/1.1",
      sourceIp: (headers["x-forwarded-for"] ?? "").split(",")[0].trim(),
      userAgent: headers["user-agent"] ?? "",
    },
    requestId: info.id,
    routeKey: "$default",
    stage: "$default",
    time: apiGatewayTime(now),
    timeEpoch: now,
  };
  if (req.body.length > 0) {
    let text;
    if (isText(headers["content-type"] ?? "")) {
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(req.body);
      } catch {}
    }
    event.body = text ?? base64(req.body);
    event.isBase64Encoded = text === undefined;
  } else {
    event.isBase64Encoded = false;
  }
  return event;
}

function base64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function unbase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/// A Lambda handler's result for an HTTP request → `{ status, headers,
/// body }`, as function URLs read it: `{statusCode, headers, body,
/// isBase64Encoded, cookies, multiValueHeaders}` is the response (without a
/// `content-type` header, a body is `application/json`); bytes are a 200
/// `application/octet-stream`; anything else a 200 `application/json` whose
/// body is the string as it is or the value as JSON.
export function apiGatewayResponse(result) {
  if (result !== null && typeof result === "object" && "statusCode" in result) {
    const headers = Object.entries(result.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]);
    for (const [k, vs] of Object.entries(result.multiValueHeaders ?? {})) {
      for (const v of vs) headers.push([k.toLowerCase(), String(v)]);
    }
    for (const c of result.cookies ?? []) headers.push(["set-cookie", String(c)]);
    let body;
    if (result.body === undefined || result.body === null) body = new Uint8Array(0);
    else if (result.isBase64Encoded) body = unbase64(String(result.body));
    else if (result.body instanceof Uint8Array) body = result.body;
    else body = typeof result.body === "string" ? result.body : JSON.stringify(result.body);
    if (body.length > 0 && !headers.some(([k]) => k === "content-type")) {
      headers.push(["content-type", "application/json"]);
    }
    return { status: Number(result.statusCode), headers, body };
  }
  if (result instanceof Uint8Array) {
    return { status: 200, headers: [["content-type", "application/octet-stream"]], body: result };
  }
  const body = typeof result === "string" ? result : JSON.stringify(result ?? null);
  return { status: 200, headers: [["content-type", "application/json"]], body };
}
