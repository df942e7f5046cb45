// IncomingBody: a body pyflare streams to the worker.

import { test } from "node:test";
import assert from "node:assert/strict";
import { IncomingBody } from "../src/bodies.mjs";

const channel = { send() {} };

test("an empty body reads as empty from a byte stream", async () => {
  // pyflare ends an empty body with one empty last chunk.
  const body = new IncomingBody(1, channel, () => {}, { byteStream: true });
  body.push(new Uint8Array(0));
  body.end();
  assert.equal(await new Response(body.stream).text(), "");
});

test("empty chunks between others are skipped", async () => {
  const body = new IncomingBody(2, channel, () => {}, { byteStream: true });
  body.push(new TextEncoder().encode("ab"));
  body.push(new Uint8Array(0));
  body.push(new TextEncoder().encode("c"));
  body.end();
  assert.equal(await new Response(body.stream).text(), "abc");
});
