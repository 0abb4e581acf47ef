// A native-style JavaScript function using every service through the
// Nimbus SDK's own layer (`"nimbus"`) and the SDK's `@aws-sdk/client-s3`:
// `handleHttp(request)` for HTTP, `handle(event)` for events; `fetch` for
// outbound HTTP.

import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { blob, config, context, InvalidInput, kv, log, messaging, remainingMs } from "nimbus";

const s3 = new S3Client({});

// What a failed call tells its caller: enough to check that it names what
// it concerns.
function failure(e) {
  return {
    name: e.name,
    message: e.message,
    code: e.code,
    service: e.service,
    resource: e.resource,
    status: e.$metadata?.httpStatusCode,
  };
}

async function attempt(f) {
  try {
    return { ok: await f() };
  } catch (e) {
    return { error: failure(e) };
  }
}

// The S3 client's calls in order, each with what it answered.
async function s3Tour() {
  const Bucket = "files";
  return {
    put: await attempt(async () => (await s3.send(new PutObjectCommand({ Bucket, Key: "dir/a.txt", Body: "alpha" }))).$metadata),
    get: await attempt(async () => {
      const r = await s3.send(new GetObjectCommand({ Bucket, Key: "dir/a.txt" }));
      return { text: await r.Body.transformToString(), length: r.ContentLength, bytes: Array.from(await r.Body.transformToByteArray()).length };
    }),
    head: await attempt(async () => (await s3.send(new HeadObjectCommand({ Bucket, Key: "dir/a.txt" }))).ContentLength),
    copy: await attempt(async () => (await s3.send(new CopyObjectCommand({ Bucket, Key: "b.txt", CopySource: "files/dir/a.txt" }))).$metadata.httpStatusCode),
    list: await attempt(async () => {
      const r = await s3.send(new ListObjectsV2Command({ Bucket, Delimiter: "/" }));
      return { keys: (r.Contents ?? []).map((c) => [c.Key, c.Size]), prefixes: (r.CommonPrefixes ?? []).map((p) => p.Prefix), count: r.KeyCount };
    }),
    page: await attempt(async () => {
      const first = await s3.send(new ListObjectsV2Command({ Bucket, MaxKeys: 1 }));
      const second = await s3.send(new ListObjectsV2Command({ Bucket, MaxKeys: 1, ContinuationToken: first.NextContinuationToken }));
      return [first.Contents[0].Key, first.IsTruncated, second.Contents[0].Key, second.IsTruncated];
    }),
    delete: await attempt(async () => (await s3.send(new DeleteObjectCommand({ Bucket, Key: "b.txt" }))).$metadata.httpStatusCode),
    missing: await attempt(() => s3.send(new GetObjectCommand({ Bucket, Key: "b.txt" }))),
    missingHead: await attempt(() => s3.send(new HeadObjectCommand({ Bucket, Key: "b.txt" }))),
    denied: await attempt(() => s3.send(new GetObjectCommand({ Bucket: "private", Key: "x" }))),
  };
}

export async function handleHttp(request) {
  // /<tenant>/<function>/<op>/<arg...>
  const [op, ...rest] = request.path.split("/").slice(3);
  const arg = rest.join("/");
  switch (op) {
    case "kv": {
      const notes = kv.open("notes");
      if (request.method === "PUT") {
        notes.set(arg, request.text());
        return { status: 204 };
      }
      const value = notes.getText(arg);
      return value === undefined ? { status: 404, body: `no note ${arg}` } : value;
    }
    case "count":
      return { count: kv.open("notes").increment("count", Number(arg || 1)) };
    case "blob": {
      const files = blob.container("files");
      files.put(arg, request.body);
      return { text: files.getText(arg), info: files.info(arg), list: [...files.list()] };
    }
    case "s3":
      return s3Tour();
    case "publish":
      messaging.publish("out", { hello: arg }, { metadata: { origin: "js" } });
      return { published: true };
    case "denied":
      return {
        kv: await attempt(() => kv.open("secret")),
        blob: await attempt(() => blob.container("private").get("x")),
        missing: await attempt(() => blob.container("files").get("nope.txt")),
        messaging: await attempt(() => messaging.publish("forbidden", "x")),
      };
    case "fetch": {
      // Outbound HTTP through the SDK's fetch (only granted hosts answer).
      try {
        const r = await fetch(request.query.get("url"), {
          method: "POST",
          headers: { "x-from": "js" },
          body: "ping",
        });
        return { status: r.status, redirected: r.redirected, text: await r.text(), type: r.headers.get("content-type") };
      } catch (e) {
        return { error: failure(e) };
      }
    }
    case "config":
      return { greeting: config.get("greeting"), missing: config.get("nope") ?? null };
    case "log":
      log.warn(`warned about ${arg}`, "services");
      console.log(`printed ${arg}`);
      return "logged";
    case "context":
      // Randomness must differ per invocation though the instance comes
      // from a build-time snapshot.
      return { ...context(), remainingMs: remainingMs(), random: Math.random(), uuid: crypto.randomUUID() };
    default:
      return { status: 404, headers: { "x-op": String(op) }, body: { error: `no operation ${op}` } };
  }
}

export async function handle(event) {
  if (event.type === "test.bad") throw new InvalidInput(`cannot use ${event.text()}`);
  if (event.type === "test.fail") throw new Error(`failed on ${event.text()}`);
  return { type: event.type, text: event.text(), attributes: event.attributes };
}
