// env.<NAME> for a D1 database: Cloudflare's D1Database surface
// (https://developers.cloudflare.com/d1/worker-api/). Statements, binding
// and sessions live here, as in workerd's client
// (src/cloudflare/internal/d1-api.ts); queries go to Rust (bindings/src/d1).

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** A bound value as the wire carries it (BLOBs as arrays of bytes). */
function encodeValue(value) {
  if (value === null) return null;
  switch (typeof value) {
    case "number":
    case "string":
      return value;
    case "boolean":
      return value ? 1 : 0;
    case "object":
      if (value instanceof ArrayBuffer) return Array.from(new Uint8Array(value));
      if (ArrayBuffer.isView(value)) {
        return Array.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      }
      if (Array.isArray(value) && value.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return value;
      break;
    case "bigint":
      if (value >= -MAX_SAFE && value <= MAX_SAFE) return Number(value);
      break;
  }
  // Message from workerd's d1-api.ts.
  throw new Error(`D1_TYPE_ERROR: Type '${typeof value}' not supported for value '${value}'`);
}

let bookmarkCounter = 0;
function nextBookmark() {
  bookmarkCounter += 1;
  return `00000000-${bookmarkCounter.toString(16).padStart(8, "0")}-00000000-${"0".repeat(32)}`;
}

class D1PreparedStatement {
  #call;
  #sql;
  #params;
  #onQuery;

  constructor(call, sql, params, onQuery) {
    this.#call = call;
    this.#sql = String(sql);
    this.#params = params;
    this.#onQuery = onQuery;
  }

  bind(...values) {
    return new D1PreparedStatement(this.#call, this.#sql, values.map(encodeValue), this.#onQuery);
  }

  get wire() {
    return { sql: this.#sql, params: this.#params };
  }

  async #query(mode, extra) {
    const { value } = await this.#call("query", { ...this.wire, mode, ...extra });
    this.#onQuery();
    return value;
  }

  async first(column) {
    return this.#query("first", column === undefined || column === null ? {} : { column: String(column) });
  }

  async all() {
    return this.#query("all");
  }

  async run() {
    return this.#query("all");
  }

  async raw(options) {
    const { columns, rows } = await this.#query("raw");
    return options?.columnNames ? [columns, ...rows] : rows;
  }
}

class D1DatabaseSession {
  #db;
  #bookmark = null;

  constructor(db) {
    this.#db = db;
  }

  prepare(sql) {
    return this.#db.prepareWith(sql, () => {
      this.#bookmark = nextBookmark();
    });
  }

  async batch(statements) {
    const results = await this.#db.batch(statements);
    this.#bookmark = nextBookmark();
    return results;
  }

  getBookmark() {
    return this.#bookmark;
  }
}

class D1Database {
  #call;

  constructor(call) {
    this.#call = call;
  }

  prepare(sql) {
    return this.prepareWith(sql, () => {});
  }

  prepareWith(sql, onQuery) {
    return new D1PreparedStatement(this.#call, sql, [], onQuery);
  }

  async batch(statements) {
    const { value } = await this.#call("batch", { queries: statements.map((s) => s.wire) });
    return value;
  }

  async exec(sql) {
    const { value } = await this.#call("exec", { sql: String(sql) });
    return value;
  }

  async dump() {
    const { body } = await this.#call("dump", {});
    return body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  }

  // Not emulated: read replicas. Every session reads the primary; the
  // constraint or bookmark is accepted as the reference emulator does.
  withSession(constraintOrBookmark) {
    return new D1DatabaseSession(this);
  }
}

/** Builds `env[name]`; `call(method, args, body)` reaches the Rust binding. */
export function create(name, call) {
  return new D1Database(call);
}
