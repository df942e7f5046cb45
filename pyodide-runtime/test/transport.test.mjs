// Framing and protocol tests for the host side; the Rust side has the
// mirror tests in emulator/src/host/{transport,protocol}.rs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  FrameDecoder,
  encodeJson,
  encodeChunkHeader,
  FrameWriter,
  MAX_FRAME_BYTES,
} from "../src/transport.mjs";
import { PROTOCOL_VERSION, BODY_WINDOW_BYTES } from "../src/protocol.mjs";

test("json and chunk frames decode across arbitrary splits", () => {
  const message = { type: "ping", seq: 1 };
  const body = Buffer.from([0, 255, 10, 13]);
  const wire = Buffer.concat([
    encodeJson(message),
    encodeChunkHeader(7, body.length),
    body,
    encodeJson({ type: "body_end", stream: 7 }),
  ]);
  for (let split = 1; split < wire.length; split++) {
    const decoder = new FrameDecoder();
    const frames = [...decoder.push(wire.subarray(0, split)), ...decoder.push(wire.subarray(split))];
    assert.equal(frames.length, 3, `split at ${split}`);
    assert.deepEqual(frames[0], { kind: "json", message });
    assert.equal(frames[1].kind, "chunk");
    assert.equal(frames[1].stream, 7);
    assert.deepEqual(Buffer.from(frames[1].data), body);
    assert.deepEqual(frames[2].message, { type: "body_end", stream: 7 });
  }
});

test("byte layout matches the Rust side", () => {
  // 4-byte big-endian length, kind byte, payload (see transport.rs).
  assert.deepEqual([...encodeJson({})], [0, 0, 0, 3, 0, 0x7b, 0x7d]);
  assert.deepEqual([...encodeChunkHeader(258, 2)], [0, 0, 0, 7, 1, 0, 0, 1, 2]);
  assert.deepEqual([...encodeChunkHeader(258, 2, true)], [0, 0, 0, 7, 2, 0, 0, 1, 2]);
});

test("frames gathered by a FrameWriter are the bytes the one-frame encoders give", () => {
  const writer = new FrameWriter();
  const body = Buffer.from([0, 255, 10, 13]);
  // Multi-byte text, enough frames to grow past the writer's first buffer,
  // and one text long enough to be measured rather than given 3x its room.
  const messages = Array.from({ length: 400 }, (_, i) => ({ type: "log", message: `é€😀 ${"x".repeat(i)}` }));
  messages.splice(200, 0, { type: "log", message: "€😀".repeat(50_000) });
  const expected = [];
  for (const message of messages) {
    writer.json(message);
    writer.chunk(7, body, message === messages.at(-1));
    expected.push(encodeJson(message), encodeChunkHeader(7, body.length, message === messages.at(-1)), body);
  }
  assert.deepEqual(writer.take(), Buffer.concat(expected));
  assert.equal(writer.length, 0);
  // Emptied by take: the next frames start a new buffer.
  writer.json({});
  assert.deepEqual([...writer.take()], [0, 0, 0, 3, 0, 0x7b, 0x7d]);
});

test("a last chunk decodes as a chunk that ends its stream", () => {
  const wire = Buffer.concat([encodeChunkHeader(9, 1), Buffer.from([1]), encodeChunkHeader(9, 0, true)]);
  const frames = new FrameDecoder().push(wire);
  assert.deepEqual(
    frames.map((f) => [f.kind, f.stream, [...f.data], f.last]),
    [
      ["chunk", 9, [1], false],
      ["chunk", 9, [], true],
    ],
  );
});

test("oversized and unknown frames are rejected", () => {
  const big = Buffer.alloc(5);
  big.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
  assert.throws(() => new FrameDecoder().push(big), /invalid frame length/);
  assert.throws(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 1, 9])), /unknown frame kind 9/);
});

test("every line of the golden transcripts decodes and re-encodes identically", () => {
  const path = fileURLToPath(new URL("../../tests/protocol/fetch.jsonl", import.meta.url));
  const lines = readFileSync(path, "utf8").split("\n").filter(Boolean);
  assert.ok(lines.length > 5);
  for (const line of lines) {
    const json = line.slice(1).trim();
    const [frame] = new FrameDecoder().push(encodeJson(JSON.parse(json)));
    assert.equal(JSON.stringify(frame.message), json);
    assert.equal(typeof frame.message.type, "string");
  }
});

test("protocol constants agree with protocol.rs", () => {
  const rust = readFileSync(
    fileURLToPath(new URL("../../emulator/src/host/protocol.rs", import.meta.url)),
    "utf8",
  );
  assert.match(rust, new RegExp(`pub const PROTOCOL_VERSION: u32 = ${PROTOCOL_VERSION};`));
  assert.equal(BODY_WINDOW_BYTES, 1024 * 1024);
});
