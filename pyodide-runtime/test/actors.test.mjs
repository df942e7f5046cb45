import { test } from "node:test";
import assert from "node:assert/strict";
import { Gate } from "../src/actors.mjs";

const turn = () => new Promise((resolve) => setImmediate(resolve));

test("an event waits while the gate is closed and enters once it opens", async () => {
  const gate = new Gate();
  const order = [];
  await gate.enter();
  assert.equal(gate.closed, true);
  const second = gate.enter().then(() => order.push("second"));
  order.push("first");
  gate.release();
  await second;
  assert.deepEqual(order, ["first", "second"]);
  assert.equal(gate.closed, true);
  gate.release();
});

test("a released gate stays closed while steps queued with setImmediate remain", async () => {
  const gate = new Gate();
  gate.lock();
  let steps = 0;
  // A Python-like task: each step queues the next.
  const step = () => {
    steps += 1;
    if (steps < 5) setImmediate(step);
  };
  setImmediate(step);
  gate.release();
  await gate.enter();
  assert.equal(steps, 5, "the gate opened before the task's steps ran out");
  gate.release();
});

test("run() closes the gate for the whole of its work", async () => {
  const gate = new Gate();
  let release;
  const work = gate.run(() => new Promise((resolve) => (release = resolve)));
  await turn();
  assert.equal(gate.closed, true);
  release("done");
  assert.equal(await work, "done");
  // It opens again: a waiting event gets in.
  await gate.enter();
  gate.release();
});
