// env.<NAME> for static assets: a Fetcher, as workerd names the class of
// the assets binding (and the name Cloudflare's Python SDK looks for), whose
// fetch() gets the asset server's answer. Routing and headers live in Rust
// (bindings/src/assets/); this file moves the request and the response, and
// follows redirects as a Fetcher does for `redirect: "follow"`.

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Redirects a fetch follows before it fails, as the Fetch standard's. */
const MAX_REDIRECTS = 20;

class Fetcher {
  #call;

  constructor(call) {
    this.#call = call;
  }

  async fetch(input, init) {
    const request = new Request(input, init);
    let url = request.url;
    let method = request.method;
    for (let hops = 0; ; hops++) {
      const args = { method, url, headers: [...request.headers] };
      // The asset's bytes come as they are read.
      const { value, body } = await this.#call("fetch", args, null, { stream: true });
      const response = new Response(body, {
        status: value.status,
        statusText: value.statusText,
        headers: value.headers,
      });
      const location = response.headers.get("location");
      if (!REDIRECTS.has(response.status) || location === null || request.redirect === "manual") {
        if (hops > 0) {
          Object.defineProperty(response, "url", { value: url });
          Object.defineProperty(response, "redirected", { value: true });
        }
        return response;
      }
      if (request.redirect === "error") throw new TypeError("Redirect mode is 'error'");
      if (hops === MAX_REDIRECTS) throw new TypeError("Too many redirects.");
      url = new URL(location, url).href;
      if (response.status === 303 && method !== "HEAD") method = "GET";
    }
  }

  connect() {
    throw new Error("connect() is not supported by the assets binding");
  }
}

export function create(_name, call) {
  return new Fetcher(call);
}
