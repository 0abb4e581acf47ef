// A Lambda-style JavaScript function, written as for AWS Lambda's Node.js
// runtime and built with the Nimbus SDK (sdk/js): S3 object-created
// notifications, SQS messages with partial batch failures, and API Gateway
// v2 HTTP requests, with the S3 client of `@aws-sdk/client-s3` and a
// key-value counter from the SDK's own layer.

import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { kv } from "nimbus";

const s3 = new S3Client({ region: "us-east-1" });

const RESULTS = "results";

async function onObjectCreated(record, context) {
  const bucket = record.s3.bucket.name;
  const key = decodeURIComponent(record.s3.object.key.replace(/\+/g, " "));
  console.log(`processing ${key} from bucket ${bucket} (event key ${record.s3.object.key})`);
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = await object.Body.transformToString();
  const summary = {
    bucket,
    key,
    size: record.s3.object.size,
    bytesRead: object.ContentLength,
    words: text.split(/\s+/).filter((w) => w !== "").length,
    upper: text.toUpperCase(),
    eTag: record.s3.object.eTag,
    requestId: context.awsRequestId,
  };
  await s3.send(
    new PutObjectCommand({ Bucket: RESULTS, Key: `${key}.json`, Body: JSON.stringify(summary) }),
  );
  const seen = kv.open("counters").increment("objects");
  return { statusCode: 200, key, objectsSeen: seen };
}

// One record per invocation (Nimbus delivers each message on its own), but
// written as for a batch, as SQS handlers are.
function onMessages(records) {
  const counters = kv.open("counters");
  const batchItemFailures = [];
  for (const record of records) {
    const receives = record.attributes.ApproximateReceiveCount;
    const attributes = Object.fromEntries(
      Object.entries(record.messageAttributes).map(([k, v]) => [k, v.stringValue]),
    );
    console.log(
      `message ${record.messageId} body ${record.body} receive ${receives} ` +
        `md5 ${record.md5OfBody} attributes ${JSON.stringify(attributes)}`,
    );
    if (record.body === "throw") {
      throw new TypeError(`cannot process message ${record.messageId}`);
    }
    if (record.body === "fail-once" && receives === "1") {
      batchItemFailures.push({ itemIdentifier: record.messageId });
      continue;
    }
    counters.increment(`sqs:${record.body}`);
  }
  return { batchItemFailures };
}

function onHttp(event, context) {
  if (event.rawPath.endsWith("/boom")) {
    throw new RangeError(`no such thing as ${event.rawPath}`);
  }
  if (event.rawPath.endsWith("/stats")) {
    const counters = kv.open("counters");
    const names = ["objects", "sqs:a", "sqs:b", "sqs:fail-once"];
    return Object.fromEntries(names.map((n) => [n, Number(counters.getText(n) ?? 0)]));
  }
  return {
    statusCode: 201,
    headers: { "content-type": "application/json", "x-handled-by": context.functionName },
    cookies: ["seen=1; Path=/"],
    body: JSON.stringify({
      event,
      context: {
        awsRequestId: context.awsRequestId,
        functionName: context.functionName,
        functionVersion: context.functionVersion,
        memoryLimitInMB: context.memoryLimitInMB,
        invokedFunctionArn: context.invokedFunctionArn,
        logGroupName: context.logGroupName,
        remainingMs: context.getRemainingTimeInMillis(),
      },
      env: process.env.AWS_LAMBDA_FUNCTION_NAME,
    }),
  };
}

export const handler = async (event, context) => {
  if (event.Records?.[0]?.eventSource === "aws:s3") {
    return onObjectCreated(event.Records[0], context);
  }
  if (event.Records?.[0]?.eventSource === "aws:sqs") {
    return onMessages(event.Records);
  }
  if (event.requestContext?.http) {
    return onHttp(event, context);
  }
  throw new Error(`unexpected event: ${JSON.stringify(event)}`);
};
