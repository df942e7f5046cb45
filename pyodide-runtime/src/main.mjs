// Entry point of the isolate host: `node main.mjs <socket-path>`.
//
// pyflare starts one such process per worker. It connects back to pyflare
// over a Unix socket, waits for `hello`, loads Pyodide and the worker, then
// serves events until the socket closes. When pyflare goes away for any
// reason (even kill -9) the socket closes and this process exits, so no Node
// process outlives its emulator.

import net from "node:net";
import v8 from "node:v8";
import vm from "node:vm";
import { FrameDecoder } from "./transport.mjs";
import { PROTOCOL_VERSION } from "./protocol.mjs";
import { Channel } from "./channel.mjs";
import { loadWorker, prepareWorker } from "./pyodide.mjs";
import { Events } from "./events.mjs";
import { nodeBaseline } from "./faults.mjs";
import { describeError } from "./errors.mjs";
import { hardenIsolate } from "./globals.mjs";
import { allowFsConstantsLookup } from "./sandbox.mjs";
import { attachChannel, onSocketMessage } from "./websockets.mjs";

hardenIsolate();
allowFsConstantsLookup();

// What Node itself holds before any of the worker: not counted against the
// worker's memory limit, as workerd has no Node.
const baseline = nodeBaseline();

const socketPath = process.argv[2];
if (!socketPath) {
  console.error("usage: node main.mjs <socket-path>");
  process.exit(2);
}

const socket = net.connect(socketPath);
const channel = new Channel(socket);
attachChannel(channel);
const decoder = new FrameDecoder();
let events = null;
let helloSeen = false;
/** The isolate's limits, from `hello`. */
let limits = {};
/** A standby host's prepared runtime, waiting for `load`. */
let standbyStage = null;

// Exit at once, without Node's teardown: an exit that waits for in-flight
// background work (a snapshot being written) can hang, leaving a process
// behind. Nothing here needs flushing: snapshots are written to a temporary
// file and renamed.
function exitNow() {
  process.kill(process.pid, "SIGKILL");
}

socket.on("close", exitNow);
socket.on("error", exitNow);
socket.on("data", (data) => {
  let frames;
  try {
    frames = decoder.push(data);
  } catch (error) {
    console.error(`pyflare host: protocol error: ${error.message}`);
    process.exit(3);
  }
  for (const frame of frames) {
    if (frame.kind === "chunk") {
      if (channel.ownsCall(frame.stream)) channel.onCallChunk(frame.stream, frame.data, frame.last);
      else events?.onChunk(frame.stream, frame.data);
      if (frame.last) onMessage({ type: "body_end", stream: frame.stream });
    } else {
      onMessage(frame.message);
    }
  }
});

function onMessage(message) {
  switch (message.type) {
    case "hello":
      if (helloSeen) return;
      helloSeen = true;
      // A host that only makes snapshots serves nothing, and holds them.
      const memoryBytes = message.worker?.take_snapshots ? 0 : (message.worker?.memory_limit_bytes ?? 0);
      limits = { memoryBytes, baseline };
      start(message);
      break;
    case "load":
      finishStandby(message);
      break;
    case "ping":
      channel.send({ type: "pong", seq: message.seq });
      break;
    case "shutdown":
      exitNow();
      break;
    // Replies to binding calls may come while the worker is still loading.
    case "call_reply":
      channel.onCallReply(message);
      break;
    case "body_end":
      if (channel.ownsCall(message.stream)) channel.onCallBodyEnd(message.stream, message.error);
      else events?.onMessage(message);
      break;
    // Credit and cancels for the body of a binding call, which may be
    // streaming while the worker is still loading.
    case "credit":
      channel.credit(message.stream, message.bytes);
      break;
    case "ws_message":
    case "ws_close":
      onSocketMessage(message);
      break;
    case "cancel":
      if (channel.sendsCallBody(message.stream)) channel.cancel(message.stream);
      else events?.onMessage(message);
      break;
    default:
      if (events) events.onMessage(message);
  }
}

async function start(hello) {
  if (hello.version !== PROTOCOL_VERSION) {
    channel.send({
      type: "load_error",
      message: `protocol version mismatch: pyflare speaks ${hello.version}, the host speaks ${PROTOCOL_VERSION}`,
    });
    return;
  }
  const started = performance.now();
  if (hello.standby) {
    try {
      standbyStage = await prepareWorker(hello.worker, channel, true);
      channel.send({ type: "standby_ready", startup_ms: Math.round(performance.now() - started) });
    } catch (error) {
      channel.send({ type: "load_error", message: describeError(error) });
    }
    return;
  }
  try {
    const worker = await loadWorker(hello.worker, channel);
    serve(worker, started);
  } catch (error) {
    channel.send({ type: "load_error", message: describeError(error) });
  }
}

/** Starts serving `worker` and tells pyflare it is ready. */
function serve(worker, started) {
  // Once loaded, collect the old generation when it has grown 30 % past
  // what was live, not several times that (V8's default), and collect once
  // a second after start so that limit starts from what the worker really
  // holds, not from what loading left behind. Under load this keeps the
  // host under 200 MB RSS. Neither at launch nor before `ready`: that would
  // slow a start by ~20-50 ms.
  v8.setFlagsFromString("--heap-growing-percent=30");
  setTimeout(() => {
    try {
      v8.setFlagsFromString("--expose-gc");
      vm.runInNewContext("gc")();
    } catch {
      // A Node without this way to collect: the heap just grows more first.
    }
  }, 1000).unref();
  events = new Events(worker, channel, limits);
  channel.startServing();
  channel.send({
    type: "ready",
    version: PROTOCOL_VERSION,
    startup_ms: Math.round(performance.now() - started),
    origin: worker.origin,
  });
}

async function finishStandby(message) {
  if (!standbyStage || events) return;
  const started = performance.now();
  try {
    const worker = await standbyStage.finish(message.snapshot_path);
    serve(worker, started);
  } catch (error) {
    channel.send({ type: "load_error", message: describeError(error) });
  }
}

process.on("unhandledRejection", (reason) => {
  channel.send({ type: "log", level: "error", message: `Uncaught (in promise) ${describeError(reason)}` });
});

// An error thrown by a listener of one of Node's event targets (an outgoing
// WebSocket's `message`, an AbortSignal's `abort`, a MessagePort) reaches
// here: Node would end the process, and every request in flight with it.
// workerd reports such an error and the isolate goes on; so does this host.
process.on("uncaughtException", (error) => {
  channel.send({ type: "log", level: "error", message: `Uncaught ${describeError(error)}` });
});
