// env.<NAME> for a KV namespace: Cloudflare's KVNamespace surface
// (https://developers.cloudflare.com/kv/api/). The class is named
// KvNamespace because that is the constructor name workerd gives it and
// the one Cloudflare's Python SDK looks for. Validation and error messages
// live in Rust (bindings/src/kv/error.rs); this file converts values.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function getOptions(options) {
  if (typeof options === "string") return { type: options };
  if (options && typeof options === "object") return { type: options.type, cacheTtl: options.cacheTtl };
  return {};
}

/** Call options: a "stream" value comes back as a ReadableStream. */
function streamed(type) {
  return type === "stream" ? { stream: true } : undefined;
}

function decodeValue(bytes, type) {
  switch (type ?? "text") {
    case "json":
      return JSON.parse(decoder.decode(bytes));
    case "arrayBuffer":
      return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    case "stream":
      // Already a stream: pyflare sends the value as it is read.
      return bytes;
    default:
      return decoder.decode(bytes);
  }
}

class KvNamespace {
  #call;

  constructor(call) {
    this.#call = call;
  }

  async get(key, options) {
    const { type, cacheTtl } = getOptions(options);
    if (Array.isArray(key)) return this.#bulk(key, type, cacheTtl, false);
    const { value, body } = await this.#call("get", { key: String(key), type, cacheTtl }, null, streamed(type));
    return value === null ? null : decodeValue(body, type);
  }

  async getWithMetadata(key, options) {
    const { type, cacheTtl } = getOptions(options);
    if (Array.isArray(key)) return this.#bulk(key, type, cacheTtl, true);
    const { value, body } = await this.#call("get", { key: String(key), type, cacheTtl, withMetadata: true }, null, streamed(type));
    if (value === null) return { value: null, metadata: null, cacheStatus: null };
    return { value: decodeValue(body, type), metadata: value.metadata, cacheStatus: null };
  }

  async #bulk(keys, type, cacheTtl, withMetadata) {
    const { value } = await this.#call("getBulk", { keys: keys.map(String), type, cacheTtl, withMetadata });
    return new Map(value.entries);
  }

  async put(key, value, options) {
    let bytes = null;
    let badValue = false;
    if (typeof value === "string") bytes = encoder.encode(value);
    else if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
    else if (ArrayBuffer.isView(value)) bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    // Sent as it is read; pyflare collects it (at most 25 MiB) before storing.
    else if (value instanceof ReadableStream) bytes = value;
    else badValue = true;
    const args = {
      key: String(key),
      expiration: options?.expiration ?? undefined,
      expirationTtl: options?.expirationTtl ?? undefined,
      badValue,
    };
    if (options?.metadata !== undefined && options?.metadata !== null) {
      args.metadata = JSON.stringify(options.metadata);
    }
    await this.#call("put", args, bytes);
  }

  async delete(key) {
    await this.#call("delete", { key: String(key) });
  }

  async list(options) {
    const { value } = await this.#call("list", {
      prefix: options?.prefix ?? undefined,
      limit: options?.limit ?? undefined,
      cursor: options?.cursor ?? undefined,
    });
    return value;
  }
}

/**
 * Builds `env[name]`; `call(method, args, body, options)` reaches the Rust
 * binding (see `Channel.call` in pyodide-runtime/src/channel.mjs).
 */
export function create(name, call) {
  return new KvNamespace(call);
}
