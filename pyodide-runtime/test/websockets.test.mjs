import { test } from "node:test";
import assert from "node:assert/strict";
import {
  WebSocketPair,
  WebSocketRequestResponsePair,
  attachChannel,
  onSocketMessage,
  setBinaryTypeDefault,
  shimApi,
  socketOf,
  socketResponse,
  wire,
} from "../src/websockets.mjs";

/** A channel to pyflare that records what the host sends it. */
function recordingChannel() {
  const sent = [];
  attachChannel({ send: (message) => sent.push(message) });
  return sent;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

test("a pair's ends pass messages once accepted; what came before waits", () => {
  const { 0: client, 1: server } = new WebSocketPair();
  const got = [];
  server.addEventListener("message", (event) => got.push(event.data));
  client.accept();
  client.send("early");
  assert.deepEqual(got, []);
  server.accept();
  assert.deepEqual(got, ["early"]);
  client.send("late");
  assert.deepEqual(got, ["early", "late"]);
});

test("sending before accept and after close fails with workerd's words", () => {
  const { 1: server } = new WebSocketPair();
  assert.throws(() => server.send("x"), {
    name: "TypeError",
    message: "You must call one of accept() or state.acceptWebSocket() on this WebSocket before sending messages.",
  });
  server.accept();
  server.close(1000, "done");
  assert.equal(server.readyState, 2);
  assert.throws(() => server.send("x"), { message: "Can't call WebSocket send() after close()." });
});

test("a wired client end sends to pyflare, and pyflare's messages reach the server end", () => {
  const sent = recordingChannel();
  setBinaryTypeDefault("arraybuffer");
  const { 0: client, 1: server } = new WebSocketPair();
  server.accept();
  server.send("before the response");
  wire(client, 7);
  server.send(new Uint8Array([1, 2]));
  server.close(4000, "bye");
  assert.deepEqual(sent, [
    { type: "ws_send", stream: 7, text: "before the response" },
    { type: "ws_send", stream: 7, binary: "AQI=" },
    { type: "ws_close", stream: 7, code: 4000, reason: "bye" },
  ]);
  const got = [];
  server.addEventListener("message", (event) => got.push(event.data));
  server.addEventListener("close", (event) => got.push([event.code, event.reason, event.wasClean]));
  onSocketMessage({ type: "ws_message", stream: 7, text: "hi" });
  onSocketMessage({ type: "ws_message", stream: 7, binary: "AwQF" });
  onSocketMessage({ type: "ws_close", stream: 7, code: 4000, reason: "bye", was_clean: true });
  assert.equal(got[0], "hi");
  assert.ok(got[1] instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(got[1])], [3, 4, 5]);
  assert.deepEqual(got[2], [4000, "bye", true]);
  assert.equal(server.readyState, 3);
});

test("binary messages reach listeners as Blobs under the standard binary type", () => {
  recordingChannel();
  setBinaryTypeDefault("blob");
  const { 0: client, 1: server } = new WebSocketPair();
  const got = [];
  server.accept();
  server.addEventListener("message", (event) => got.push(event.data));
  wire(client, 8);
  onSocketMessage({ type: "ws_message", stream: 8, binary: "AQID" });
  assert.ok(got[0] instanceof Blob);
  assert.equal(got[0].size, 3);
  setBinaryTypeDefault("arraybuffer");
});

test("a listener that throws is logged, and the next one still runs", () => {
  const sent = recordingChannel();
  const { 0: client, 1: server } = new WebSocketPair();
  const got = [];
  server.accept();
  server.addEventListener("message", () => {
    throw new Error("listener broke");
  });
  server.addEventListener("message", (event) => got.push(event.data));
  client.accept();
  client.send("x");
  assert.deepEqual(got, ["x"]);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].level, "error");
  assert.match(sent[0].message, /^Uncaught .*listener broke/);
});

test("a 101 response carries its client end; other statuses with a socket fail", () => {
  const { 0: client } = new WebSocketPair();
  const response = socketResponse(Response, null, { status: 101, webSocket: client, headers: { "x-a": "1" } });
  assert.equal(response.status, 101);
  assert.equal(response.statusText, "Switching Protocols");
  assert.equal(response.webSocket, client);
  assert.equal(response.headers.get("x-a"), "1");
  assert.equal(socketOf(response), client);
  assert.equal(socketOf(new Response("plain")), null);
  assert.throws(() => socketResponse(Response, null, { status: 200, webSocket: client }), {
    name: "RangeError",
    message: "Responses with a WebSocket must have status code 101.",
  });
});

test("hibernation: handlers get the events, getWebSockets counts a closing socket until its handler ends", async () => {
  const sent = recordingChannel();
  const calls = [];
  let finishClose;
  const dispatch = (method, args) => {
    calls.push([method, args[1] ?? null]);
    if (method === "webSocketClose") {
      calls.push(["during close", shimApi.hibernating("room").length, args[0].readyState]);
      return new Promise((resolve) => (finishClose = resolve));
    }
    return undefined;
  };
  const { 0: client, 1: server } = new WebSocketPair();
  shimApi.hibernate(server, "room", ["t"], dispatch);
  assert.throws(() => server.accept(), {
    name: "TypeError",
    message: "Can't accept() WebSocket after enabling hibernation.",
  });
  const { 1: accepted } = new WebSocketPair();
  accepted.accept();
  assert.throws(() => shimApi.hibernate(accepted, "room", [], dispatch), {
    message: "Cannot call `acceptWebSocket()` if the WebSocket was already accepted via `accept()`",
  });
  assert.deepEqual(shimApi.tags(server), ["t"]);
  assert.equal(shimApi.hibernating("room", "t").length, 1);
  assert.equal(shimApi.hibernating("room", "other").length, 0);
  // Carried across pyflare by handle, as a Durable Object's 101 is.
  const handle = shimApi.keep(client);
  const response = shimApi.response(handle, { headers: [] });
  wire(socketOf(response), 9);
  server.send("welcome");
  assert.deepEqual(sent.at(-1), { type: "ws_send", stream: 9, text: "welcome" });
  onSocketMessage({ type: "ws_message", stream: 9, text: "hello" });
  onSocketMessage({ type: "ws_close", stream: 9, code: 4000, reason: "bye", was_clean: true });
  assert.deepEqual(calls, [
    ["webSocketMessage", "hello"],
    ["webSocketClose", 4000],
    ["during close", 1, 2],
  ]);
  finishClose();
  await turn();
  assert.equal(shimApi.hibernating("room").length, 0);
  assert.equal(server.readyState, 3);
});

test("an object's automatic response answers its request without the handler", () => {
  const sent = recordingChannel();
  const calls = [];
  const { 0: client, 1: server } = new WebSocketPair();
  shimApi.hibernate(server, "auto", [], (method, args) => calls.push([method, args[1]]));
  wire(client, 10);
  assert.equal(shimApi.autoResponse("auto"), null);
  assert.throws(() => new WebSocketRequestResponsePair("ping"), {
    name: "TypeError",
    message: "Failed to construct 'WebSocketRequestResponsePair': constructor parameter 2 is not of type 'string'.",
  });
  shimApi.setAutoResponse("auto", new WebSocketRequestResponsePair("ping", "pong"));
  assert.equal(shimApi.autoResponse("auto").response, "pong");
  assert.equal(shimApi.autoResponded(server), null);
  onSocketMessage({ type: "ws_message", stream: 10, text: "ping" });
  onSocketMessage({ type: "ws_message", stream: 10, text: "other" });
  assert.deepEqual(sent, [{ type: "ws_send", stream: 10, text: "pong" }]);
  assert.deepEqual(calls, [["webSocketMessage", "other"]]);
  assert.ok(shimApi.autoResponded(server) instanceof Date);
  shimApi.setAutoResponse("auto", undefined);
  assert.equal(shimApi.autoResponse("auto"), null);
});
