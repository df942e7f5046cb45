import { test } from "node:test";
import assert from "node:assert/strict";
import { cleanTraceback, describeForClient } from "../src/errors.mjs";

test("pyflare and importlib frames are dropped from tracebacks", () => {
  const text = [
    "Traceback (most recent call last):",
    '  File "/session/pyflare/_pyflare/entrypoints.py", line 37, in load',
    "    module = importlib.import_module(main_module)",
    '  File "/lib/python314.zip/importlib/__init__.py", line 88, in import_module',
    "    return _bootstrap._gcd_import(name[level:], package, level)",
    "           ~~~~~~~~~~~~~~~~~~~~~~^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    '  File "<frozen importlib._bootstrap>", line 1398, in _gcd_import',
    '  File "/session/metadata/entry.py", line 3, in <module>',
    "    import missing",
    "ModuleNotFoundError: No module named 'missing'",
  ].join("\n");
  assert.equal(
    cleanTraceback(text),
    [
      "Traceback (most recent call last):",
      '  File "/session/metadata/entry.py", line 3, in <module>',
      "    import missing",
      "ModuleNotFoundError: No module named 'missing'",
    ].join("\n"),
  );
});

test("a host-side JS error reaches the client without its stack", () => {
  let error;
  try {
    new Headers({ "x-test": "\u2026" });
  } catch (e) {
    error = e;
  }
  const text = describeForClient(error);
  assert.match(text, /^TypeError: /);
  assert.doesNotMatch(text, /\n\s+at /);
  assert.equal(describeForClient("plain"), "plain");
});
