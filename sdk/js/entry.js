// The componentize-js entry of every function built with the SDK: it
// imports the user's module (the bundler maps `__nimbus_user_function__` to
// it) and exports the two interfaces of `nimbus:function/app`, the event
// `handler` and `wasi:http`'s `incomingHandler`. The user's own `handler`
// (a Lambda function) stays under that module's namespace, so it never
// clashes with the WIT export of the same name.

import * as user from "__nimbus_user_function__";

import { handleEvent, handleRequest } from "./runtime.js";

export const handler = {
  handle: (event) => handleEvent(user, event),
};

export const incomingHandler = {
  handle: (request, responseOut) => handleRequest(user, request, responseOut),
};
