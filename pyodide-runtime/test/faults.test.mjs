// The hang watch counts thread-pool jobs (WebCrypto, zlib) as work under
// way, from the moment the worker reaches an API that starts them, not
// before (this file's process starts with the count off).

import { test } from "node:test";
import assert from "node:assert/strict";
import { poolJobsUnderWay, poolJobsWatched } from "../src/faults.mjs";
import { makeWorkerGlobals } from "../src/globals.mjs";

test("thread-pool jobs are counted from the worker's first look-up of crypto", async () => {
  const { view } = makeWorkerGlobals("faults-test");
  // What every worker touches as it loads and serves.
  void view.Response;
  void view.fetch;
  void view.setTimeout;
  assert.equal(poolJobsWatched(), false);
  const digest = crypto.subtle.digest("SHA-256", new Uint8Array(1024));
  assert.equal(poolJobsUnderWay(), 0, "counted before anything asked for it");
  await digest;

  const { subtle } = view.crypto;
  assert.equal(poolJobsWatched(), true);
  const job = subtle.digest("SHA-256", new Uint8Array(1024));
  assert.equal(poolJobsUnderWay(), 1);
  await job;
  assert.equal(poolJobsUnderWay(), 0);
});
