import { test } from "node:test";
import assert from "node:assert/strict";
import { compatFlags } from "../src/compat.mjs";

test("flags default on by compatibility date, opt-outs win", () => {
  const old = compatFlags("2025-03-01", ["python_workers"]);
  assert.equal(old.python_workers, true);
  assert.equal(old.python_no_global_handlers, false);
  assert.equal(old.python_workflows_implicit_dependencies, false);

  const recent = compatFlags("2026-06-01", ["python_workers", "no_python_check_rng_state", "my_flag"]);
  assert.equal(recent.python_no_global_handlers, true);
  assert.equal(recent.enable_python_external_sdk, true);
  assert.equal(recent.python_check_rng_state, false);
  assert.equal(recent.my_flag, true);
});
