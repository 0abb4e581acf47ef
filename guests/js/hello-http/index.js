// A standard `wasi:http/proxy` function in JavaScript, built with
// componentize-js against the WASI packages in `wit/` (no Nimbus SDK): the
// `wasi:http/types` resources directly, so it targets wasi:http 0.2.12.

import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.12";

const text = (s) => new TextEncoder().encode(s);

export const incomingHandler = {
  handle(request, responseOut) {
    const response = new OutgoingResponse(Fields.fromList([["content-type", text("text/plain")]]));
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: "ok", val: response });
    const stream = body.write();
    stream.blockingWriteAndFlush(text(`Hello from JavaScript at ${request.pathWithQuery()}\n`));
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
