// The assets binding's shim (bindings/src/assets/shim.mjs): a Fetcher whose
// fetch follows redirects as Cloudflare's does, by the request's mode. The
// asset server here is a table of answers, as pyflare's call would give them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "../../bindings/src/assets/shim.mjs";

/** A binding over `answers` (path -> {status, headers, body}); records the calls. */
function binding(answers) {
  const calls = [];
  const call = async (method, args) => {
    calls.push({ call: method, ...args });
    const path = new URL(args.url).pathname;
    const answer = answers[path] ?? { status: 404, headers: [] };
    const body = answer.body === undefined ? null : new Blob([answer.body]).stream();
    return { value: { status: answer.status, statusText: "", headers: answer.headers }, body };
  };
  return { assets: create("ASSETS", call), calls };
}

const site = {
  "/about.html": { status: 307, headers: [["Location", "/about"]] },
  "/about": { status: 200, headers: [["Content-Type", "text/html; charset=utf-8"]], body: "about" },
  "/loop": { status: 307, headers: [["Location", "/loop"]] },
};

test("the class is Fetcher, the name Cloudflare's SDK looks for", () => {
  assert.equal(binding(site).assets.constructor.name, "Fetcher");
});

test("a redirect is followed by default, and the response says so", async () => {
  const { assets, calls } = binding(site);
  const response = await assets.fetch("http://assets/about.html", { headers: { "X-Test": "1" } });
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "about");
  assert.equal(response.url, "http://assets/about");
  assert.equal(response.redirected, true);
  assert.deepEqual(
    calls.map((c) => c.url),
    ["http://assets/about.html", "http://assets/about"],
  );
  assert.deepEqual(calls[1].headers, [["x-test", "1"]]);
});

test("redirect: manual returns the redirect, error throws", async () => {
  const { assets } = binding(site);
  const response = await assets.fetch("http://assets/about.html", { redirect: "manual" });
  assert.equal(response.status, 307);
  assert.equal(response.headers.get("location"), "/about");
  await assert.rejects(assets.fetch("http://assets/about.html", { redirect: "error" }), TypeError);
});

test("a redirect loop fails after 20 hops", async () => {
  const { assets, calls } = binding(site);
  await assert.rejects(assets.fetch("http://assets/loop"), /Too many redirects/);
  assert.equal(calls.length, 21);
});

test("a Request passes its method and headers", async () => {
  const { assets, calls } = binding(site);
  const response = await assets.fetch(new Request("http://assets/x", { method: "HEAD" }));
  assert.equal(response.status, 404);
  assert.equal(calls[0].call, "fetch");
  assert.equal(calls[0].method, "HEAD");
  assert.equal(calls[0].url, "http://assets/x");
});
