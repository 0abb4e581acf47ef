// `@aws-sdk/client-s3` for Nimbus functions: the subset of the AWS SDK v3
// S3 client a Lambda function uses most, backed by the function's granted
// blob containers (bucket = container). The build maps the package name to
// this module, so `import { S3Client, GetObjectCommand } from
// "@aws-sdk/client-s3"` works unmodified; calls run in-process against the
// host (no network, no credentials: the grant is the permission).

import { blob, NimbusError } from "./nimbus.js";
import { toBytes } from "./streams.js";

const decoder = new TextDecoder();

/// The base of every error `send` throws, as in the AWS SDK: `name` is the
/// S3 error code, `$metadata.httpStatusCode` its status.
export class S3ServiceException extends Error {
  constructor({ name, message, status, fault = "client" }) {
    super(message);
    this.name = name;
    this.Code = name;
    this.$fault = fault;
    this.$metadata = { httpStatusCode: status, attempts: 1, totalRetryDelay: 0 };
  }
}

export class NoSuchKey extends S3ServiceException {
  constructor(message) {
    super({ name: "NoSuchKey", message, status: 404 });
  }
}

export class NoSuchBucket extends S3ServiceException {
  constructor(message) {
    super({ name: "NoSuchBucket", message, status: 404 });
  }
}

/// What HeadObject throws for a missing key (a HEAD response has no body to
/// carry "NoSuchKey").
export class NotFound extends S3ServiceException {
  constructor(message) {
    super({ name: "NotFound", message, status: 404 });
  }
}

function s3Error(e, { head = false } = {}) {
  if (!(e instanceof NimbusError)) throw e;
  switch (e.code) {
    case "access-denied":
      return new S3ServiceException({ name: "AccessDenied", message: e.message, status: 403 });
    case "no-such-object":
      return head ? new NotFound(e.message) : new NoSuchKey(e.message);
    case "no-such-container":
      return new NoSuchBucket(e.message);
    default:
      return new S3ServiceException({
        name: "InternalError",
        message: e.message,
        status: 500,
        fault: "server",
      });
  }
}

function required(input, field, command) {
  if (typeof input?.[field] !== "string" || input[field] === "") {
    throw new S3ServiceException({
      name: "ValidationError",
      message: `${command}: input.${field} is required`,
      status: 400,
    });
  }
  return input[field];
}

const meta = (status) => ({ httpStatusCode: status, attempts: 1, totalRetryDelay: 0 });

/// A GetObject body: the bytes, read already, behind the AWS SDK's stream
/// mixin methods.
class Body {
  constructor(bytes) {
    this.bytes = bytes;
  }
  async transformToByteArray() {
    return this.bytes;
  }
  async transformToString(encoding = "utf-8") {
    return new TextDecoder(encoding).decode(this.bytes);
  }
  transformToWebStream() {
    const bytes = this.bytes;
    return new ReadableStream({
      start(c) {
        c.enqueue(bytes);
        c.close();
      },
    });
  }
}

class Command {
  constructor(input = {}) {
    this.input = input;
  }
}

export class GetObjectCommand extends Command {
  run() {
    const Bucket = required(this.input, "Bucket", "GetObject");
    const Key = required(this.input, "Key", "GetObject");
    try {
      const c = blob.container(Bucket);
      const info = c.info(Key);
      const bytes = c.get(Key);
      return {
        Body: new Body(bytes),
        ContentLength: bytes.length,
        LastModified: info.createdAt,
        $metadata: meta(200),
      };
    } catch (e) {
      throw s3Error(e);
    }
  }
}

export class PutObjectCommand extends Command {
  async run() {
    const Bucket = required(this.input, "Bucket", "PutObject");
    const Key = required(this.input, "Key", "PutObject");
    let body = this.input.Body ?? new Uint8Array(0);
    if (typeof Blob === "function" && body instanceof Blob) {
      body = new Uint8Array(await body.arrayBuffer());
    } else if (typeof body !== "string" && !(body instanceof ArrayBuffer) && !ArrayBuffer.isView(body)) {
      throw new S3ServiceException({
        name: "ValidationError",
        message: "PutObject: input.Body must be a string, bytes or a Blob",
        status: 400,
      });
    }
    try {
      blob.container(Bucket).put(Key, toBytes(body));
    } catch (e) {
      throw s3Error(e);
    }
    return { $metadata: meta(200) };
  }
}

export class HeadObjectCommand extends Command {
  run() {
    const Bucket = required(this.input, "Bucket", "HeadObject");
    const Key = required(this.input, "Key", "HeadObject");
    try {
      const info = blob.container(Bucket).info(Key);
      return { ContentLength: info.size, LastModified: info.createdAt, $metadata: meta(200) };
    } catch (e) {
      throw s3Error(e, { head: true });
    }
  }
}

export class DeleteObjectCommand extends Command {
  run() {
    const Bucket = required(this.input, "Bucket", "DeleteObject");
    const Key = required(this.input, "Key", "DeleteObject");
    try {
      blob.container(Bucket).delete(Key);
    } catch (e) {
      // S3 answers a delete of a missing key with 204 too.
      if (!(e instanceof NimbusError && e.code === "no-such-object")) throw s3Error(e);
    }
    return { $metadata: meta(204) };
  }
}

export class ListObjectsV2Command extends Command {
  run() {
    const Bucket = required(this.input, "Bucket", "ListObjectsV2");
    const prefix = this.input.Prefix ?? "";
    const max = Math.min(Math.max(Number(this.input.MaxKeys ?? 1000), 0), 1000);
    // The continuation token is the last key of the previous page: names
    // are listed in order.
    const after =
      this.input.ContinuationToken !== undefined
        ? decoder.decode(Uint8Array.from(atob(this.input.ContinuationToken), (c) => c.charCodeAt(0)))
        : this.input.StartAfter ?? "";
    const delimiter = this.input.Delimiter;
    try {
      const c = blob.container(Bucket);
      const contents = [];
      const prefixes = new Set();
      let truncated = false;
      let last;
      for (const name of c.list(prefix)) {
        if (name <= after) continue;
        if (contents.length + prefixes.size >= max) {
          truncated = true;
          break;
        }
        const rest = name.slice(prefix.length);
        const cut = delimiter ? rest.indexOf(delimiter) : -1;
        if (cut >= 0) {
          const p = prefix + rest.slice(0, cut + delimiter.length);
          if (!prefixes.has(p)) prefixes.add(p);
        } else {
          const info = c.info(name);
          contents.push({ Key: name, Size: info.size, LastModified: info.createdAt, StorageClass: "STANDARD" });
        }
        last = name;
      }
      const out = {
        Name: Bucket,
        Prefix: prefix,
        MaxKeys: max,
        KeyCount: contents.length + prefixes.size,
        IsTruncated: truncated,
        $metadata: meta(200),
      };
      if (contents.length > 0) out.Contents = contents;
      if (prefixes.size > 0) out.CommonPrefixes = [...prefixes].map((Prefix) => ({ Prefix }));
      if (delimiter) out.Delimiter = delimiter;
      if (this.input.ContinuationToken !== undefined) out.ContinuationToken = this.input.ContinuationToken;
      if (truncated) {
        out.NextContinuationToken = btoa(String.fromCharCode(...new TextEncoder().encode(last)));
      }
      return out;
    } catch (e) {
      throw s3Error(e);
    }
  }
}

export class CopyObjectCommand extends Command {
  run() {
    const Bucket = required(this.input, "Bucket", "CopyObject");
    const Key = required(this.input, "Key", "CopyObject");
    const source = decodeURIComponent(required(this.input, "CopySource", "CopyObject")).replace(/^\//, "");
    const slash = source.indexOf("/");
    if (slash <= 0 || slash === source.length - 1) {
      throw new S3ServiceException({
        name: "InvalidArgument",
        message: `CopyObject: CopySource ${JSON.stringify(this.input.CopySource)} is not "bucket/key"`,
        status: 400,
      });
    }
    try {
      blob.copy(
        { container: source.slice(0, slash), key: source.slice(slash + 1) },
        { container: Bucket, key: Key },
      );
      const info = blob.container(Bucket).info(Key);
      return { CopyObjectResult: { LastModified: info.createdAt }, $metadata: meta(200) };
    } catch (e) {
      throw s3Error(e);
    }
  }
}

/// `new S3Client({ region, ... })`; the configuration is accepted and
/// ignored (there is no endpoint to reach). `send(command)` runs the
/// command against the host.
export class S3Client {
  constructor(config = {}) {
    this.config = config;
  }

  async send(command) {
    if (!(command instanceof Command)) {
      throw new TypeError(
        "this S3 client runs GetObject, PutObject, HeadObject, DeleteObject, ListObjectsV2 and CopyObject commands only",
      );
    }
    return command.run();
  }

  destroy() {}
}

/// The aggregated client (`new S3({}).getObject({...})`), for code written
/// against it.
export class S3 extends S3Client {
  getObject(input) {
    return this.send(new GetObjectCommand(input));
  }
  putObject(input) {
    return this.send(new PutObjectCommand(input));
  }
  headObject(input) {
    return this.send(new HeadObjectCommand(input));
  }
  deleteObject(input) {
    return this.send(new DeleteObjectCommand(input));
  }
  listObjectsV2(input) {
    return this.send(new ListObjectsV2Command(input));
  }
  copyObject(input) {
    return this.send(new CopyObjectCommand(input));
  }
}
