// env.<NAME> for an R2 bucket: Cloudflare's R2Bucket surface
// (https://developers.cloudflare.com/r2/api/workers/workers-api-reference/).
// The class is named R2Bucket, the name Cloudflare's Python SDK looks for;
// objects are HeadResult (R2Object) and GetResult (R2ObjectBody), the
// constructor names workerd gives them.
// This file turns options into JSON (Headers, Dates, ArrayBuffers) and
// answers into R2Object / R2ObjectBody; checks and error messages live in
// Rust (bindings/src/r2/).

const HTTP_FIELDS = [
  ["contentType", "content-type"],
  ["contentLanguage", "content-language"],
  ["contentDisposition", "content-disposition"],
  ["contentEncoding", "content-encoding"],
  ["cacheControl", "cache-control"],
];
const CHECKSUMS = ["md5", "sha1", "sha256", "sha384", "sha512"];

function toMillis(value) {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Date) return value.getTime();
  const parsed = new Date(value).getTime();
  return Number.isNaN(parsed) ? undefined : parsed;
}

function toHex(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes.buffer;
}

/** `R2HTTPMetadata` or `Headers` -> JSON (cacheExpiry in ms). */
function httpMetadataArg(value) {
  if (value === undefined || value === null) return undefined;
  const out = {};
  if (value instanceof Headers) {
    for (const [field, header] of HTTP_FIELDS) {
      const v = value.get(header);
      if (v !== null) out[field] = v;
    }
    const expires = toMillis(value.get("expires") ?? undefined);
    if (expires !== undefined) out.cacheExpiry = expires;
    return out;
  }
  for (const [field] of HTTP_FIELDS) {
    if (value[field] !== undefined && value[field] !== null) out[field] = String(value[field]);
  }
  const expiry = toMillis(value.cacheExpiry);
  if (expiry !== undefined) out.cacheExpiry = expiry;
  return out;
}

/** An etag condition (`"a", W/"b"`, `*`, a bare etag) -> a list of etags. */
function etagsArg(value) {
  if (value === undefined || value === null) return undefined;
  const text = Array.isArray(value) ? value.join(",") : String(value);
  return text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      if (s === "*") return { type: "wildcard" };
      if (s.startsWith("W/")) return { type: "weak", value: s.slice(2).replace(/^"|"$/g, "") };
      return { type: "strong", value: s.replace(/^"|"$/g, "") };
    });
}

/** `R2Conditional` or `Headers` with If-* -> JSON. */
function conditionalArg(value) {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Headers) {
    return {
      etagMatches: etagsArg(value.get("if-match") ?? undefined),
      etagDoesNotMatch: etagsArg(value.get("if-none-match") ?? undefined),
      uploadedAfter: toMillis(value.get("if-modified-since") ?? undefined),
      uploadedBefore: toMillis(value.get("if-unmodified-since") ?? undefined),
      secondsGranularity: true,
    };
  }
  return {
    etagMatches: etagsArg(value.etagMatches),
    etagDoesNotMatch: etagsArg(value.etagDoesNotMatch),
    uploadedAfter: toMillis(value.uploadedAfter),
    uploadedBefore: toMillis(value.uploadedBefore),
    secondsGranularity: value.secondsGranularity === true,
  };
}

function rangeArg(value) {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Headers) {
    const header = value.get("range");
    return header === null ? undefined : { header };
  }
  return { offset: value.offset ?? undefined, length: value.length ?? undefined, suffix: value.suffix ?? undefined };
}

/** A put or part value -> a call body (null for none). */
function bodyArg(value, method, owner) {
  if (value === undefined || value === null) return null;
  if (typeof value === "string" || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return value;
  if (value instanceof ReadableStream) return value;
  if (value instanceof Blob) return value.stream();
  throw new TypeError(
    `Failed to execute '${method}' on '${owner}': parameter 2 is not of type 'ReadableStream or ArrayBuffer or ArrayBufferView or string or Blob'.`,
  );
}

class R2Checksums {
  constructor(hexes) {
    for (const name of CHECKSUMS) {
      this[name] = hexes?.[name] === undefined ? undefined : fromHex(hexes[name]);
    }
    Object.defineProperty(this, "hexes", { value: { ...hexes }, enumerable: false });
  }

  toJSON() {
    return { ...this.hexes };
  }
}

/** Range checks workerd makes before any request. */
function checkRange(range) {
  if (range === undefined || range === null || range instanceof Headers) return;
  if (typeof range.offset === "number" && range.offset < 0) {
    throw new RangeError(`Invalid range. Starting offset (${range.offset}) must be greater than or equal to 0.`);
  }
}

function httpMetadataOut(json) {
  const out = { ...json };
  if (out.cacheExpiry !== undefined) out.cacheExpiry = new Date(out.cacheExpiry);
  return out;
}

class HeadResult {
  constructor(json) {
    this.key = json.key;
    this.version = json.version;
    this.size = json.size;
    this.etag = json.etag;
    this.httpEtag = `"${json.etag}"`;
    this.uploaded = new Date(json.uploaded);
    this.httpMetadata = httpMetadataOut(json.httpMetadata ?? {});
    this.customMetadata = { ...(json.customMetadata ?? {}) };
    this.range = json.range;
    this.checksums = new R2Checksums(json.checksums);
    this.storageClass = json.storageClass;
    this.ssecKeyMd5 = undefined;
  }

  writeHttpMetadata(headers) {
    for (const [field, header] of HTTP_FIELDS) {
      const v = this.httpMetadata[field];
      if (v !== undefined) headers.set(header, v);
    }
    if (this.httpMetadata.cacheExpiry !== undefined) headers.set("expires", this.httpMetadata.cacheExpiry.toUTCString());
  }
}

class GetResult extends HeadResult {
  #body;

  constructor(json, body) {
    super(json);
    this.#body = body;
  }

  get body() {
    return this.#body;
  }

  get bodyUsed() {
    return this.#body.locked;
  }

  #read() {
    if (this.#body.locked) return Promise.reject(new TypeError("Body has already been used. It can only be used once. Use tee() first if you need to read it twice."));
    return new Response(this.#body);
  }

  async arrayBuffer() {
    return (await this.#read()).arrayBuffer();
  }

  async bytes() {
    return new Uint8Array(await this.arrayBuffer());
  }

  async text() {
    return (await this.#read()).text();
  }

  async json() {
    return JSON.parse(await this.text());
  }

  async blob() {
    const bytes = await this.arrayBuffer();
    return new Blob([bytes], { type: this.httpMetadata.contentType ?? "" });
  }
}

class R2MultipartUpload {
  #call;

  constructor(call, key, uploadId) {
    this.#call = call;
    this.key = key;
    this.uploadId = uploadId;
  }

  async uploadPart(partNumber, value) {
    const args = { key: this.key, uploadId: this.uploadId, partNumber: Number(partNumber) };
    const { value: part } = await this.#call("uploadPart", args, bodyArg(value, "uploadPart", "R2MultipartUpload"));
    return part;
  }

  async abort() {
    await this.#call("abortMultipartUpload", { key: this.key, uploadId: this.uploadId });
  }

  async complete(parts) {
    const list = Array.from(parts ?? [], (p) => ({ partNumber: Number(p.partNumber), etag: String(p.etag) }));
    const { value } = await this.#call("completeMultipartUpload", { key: this.key, uploadId: this.uploadId, parts: list });
    return new HeadResult(value);
  }
}

class R2Bucket {
  #call;

  constructor(call) {
    this.#call = call;
  }

  async head(key) {
    const { value } = await this.#call("head", { key: String(key) });
    return value === null ? null : new HeadResult(value);
  }

  async get(key, options) {
    checkRange(options?.range);
    const args = { key: String(key), onlyIf: conditionalArg(options?.onlyIf), range: rangeArg(options?.range) };
    const { value, body } = await this.#call("get", args, null, { stream: true });
    if (value === null) return null;
    if (value.bodyless || body === null) return new HeadResult(value.object);
    return new GetResult(value.object, body);
  }

  async put(key, value, options) {
    const args = {
      key: String(key),
      httpMetadata: httpMetadataArg(options?.httpMetadata),
      customMetadata: options?.customMetadata ? Object.fromEntries(Object.entries(options.customMetadata).map(([k, v]) => [k, String(v)])) : undefined,
      onlyIf: conditionalArg(options?.onlyIf),
      storageClass: options?.storageClass ?? undefined,
    };
    for (const name of CHECKSUMS) args[name] = toHex(options?.[name]);
    const { value: object } = await this.#call("put", args, bodyArg(value, "put", "R2Bucket"));
    return object === null ? null : new HeadResult(object);
  }

  async delete(keys) {
    const list = Array.isArray(keys) ? keys.map(String) : [String(keys)];
    await this.#call("delete", { keys: list });
  }

  async list(options) {
    const { value } = await this.#call("list", {
      limit: options?.limit ?? undefined,
      prefix: options?.prefix ?? undefined,
      cursor: options?.cursor ?? undefined,
      delimiter: options?.delimiter ?? undefined,
      startAfter: options?.startAfter ?? undefined,
      include: options?.include ? Array.from(options.include, String) : undefined,
    });
    return {
      objects: value.objects.map((o) => new HeadResult(o)),
      truncated: value.truncated,
      cursor: value.cursor,
      delimitedPrefixes: value.delimitedPrefixes,
    };
  }

  async createMultipartUpload(key, options) {
    const { value } = await this.#call("createMultipartUpload", {
      key: String(key),
      httpMetadata: httpMetadataArg(options?.httpMetadata),
      customMetadata: options?.customMetadata ?? undefined,
      storageClass: options?.storageClass ?? undefined,
    });
    return new R2MultipartUpload(this.#call, value.key, value.uploadId);
  }

  resumeMultipartUpload(key, uploadId) {
    return new R2MultipartUpload(this.#call, String(key), String(uploadId));
  }
}

/**
 * Builds `env[name]`; `call(method, args, body, options)` reaches the Rust
 * binding (see `Channel.call` in pyodide-runtime/src/channel.mjs).
 */
export function create(name, call) {
  return new R2Bucket(call);
}
