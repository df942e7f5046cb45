// Memory snapshots on disk: Pyodide's memory after the imports, what
// restoring it needs besides (the native extension modules to load first),
// and a SHA-256 of both, so a truncated or corrupt file is never restored.

import { existsSync, readFileSync, writeFileSync, unlinkSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { createHash } from "node:crypto";
import { mkdir, writeFile, rename } from "node:fs/promises";
import { Buffer } from "node:buffer";
import { dylibRecord, sessionDylibs } from "./dylibs.mjs";

/** SHA-256 of `parts` one after the other, hashed 1 MiB at a time so the event loop keeps turning. */
async function sha256InSlices(parts) {
  const hash = createHash("sha256");
  const slice = 1024 * 1024;
  for (const bytes of parts) {
    for (let offset = 0; offset < bytes.byteLength; offset += slice) {
      hash.update(bytes.subarray(offset, Math.min(offset + slice, bytes.byteLength)));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return hash.digest();
}

/**
 * One memory snapshot on disk: the bytes Pyodide makes, a JSON record of the
 * native extension modules loaded before them (`dylibs.mjs`), the record's
 * length (4 bytes, little-endian), then a SHA-256 of all that, so a
 * truncated or corrupt file is never restored. Python globals may
 * hold the JS objects pyflare registers (the entrypoint helper, the compat
 * flags, cloudflare:workers and its env); they are recorded by name and
 * handed back on restore. Any other JS object means the worker cannot be
 * snapshotted; a `.nosnap` file next to the snapshot says why, so later
 * starts do not retry.
 */
export class SnapshotFile {
  #path;
  #known;
  #log;

  constructor(path, known, log) {
    this.#path = path;
    this.#known = known;
    this.#log = log;
  }

  /** The snapshot file's path, if snapshots are on. */
  get path() {
    return this.#path;
  }

  wanted() {
    return Boolean(this.#path) && !existsSync(`${this.#path}.nosnap`);
  }

  read() {
    if (!this.#path || !existsSync(this.#path)) return null;
    try {
      const file = readFileSync(this.#path);
      if (file.length < 1024 * 1024) throw new Error("too short");
      const body = file.subarray(0, file.length - 32);
      const digest = createHash("sha256").update(body).digest();
      if (!digest.equals(file.subarray(file.length - 32))) throw new Error("checksum mismatch");
      const recordLength = body.readUInt32LE(body.length - 4);
      const recordStart = body.length - 4 - recordLength;
      if (recordStart < 0) throw new Error("no record of its native modules");
      const record = JSON.parse(body.subarray(recordStart, body.length - 4).toString("utf8"));
      return { memory: body.subarray(0, recordStart), record };
    } catch (error) {
      this.#log("warn", `[pyflare] ignoring a damaged snapshot (${error.message}); rebuilding it`);
      this.discard();
      return null;
    }
  }

  discard() {
    try {
      unlinkSync(this.#path);
    } catch {}
  }

  /**
   * Records why this snapshot is not taken, so later starts do not retry.
   * A snapshot maker's note is `made`: pyflare keeps it only if the
   * worker's files did not change while they were imported (the refusal
   * may be the newer code's).
   */
  refuse(reason, made = false) {
    if (!this.#path) return;
    try {
      if (!existsSync(dirname(this.#path))) mkdirSync(dirname(this.#path), { recursive: true });
      writeFileSync(`${this.#path}.nosnap${made ? ".made" : ""}`, `${reason}\n`);
    } catch {}
  }

  deserialize(description) {
    const value = this.#known[description?.pyflare];
    if (value === undefined) throw new Error(`unknown snapshot object ${JSON.stringify(description)}`);
    return value;
  }

  /**
   * Takes the snapshot of `py`, whose native extension modules
   * `preload.names` were loaded before Python started (the function table
   * `preload.table` long after them). One loaded later cannot be restored:
   * the snapshot is left to a maker told to load every module this one
   * reports (`sessionDylibs`) first, and refused if this host was that
   * maker (`preload.told`).
   */
  async take(py, preload = { names: [], table: 0, told: false }) {
    if (!this.wanted() || existsSync(this.#path)) return;
    const late = sessionDylibs(py._module).filter((name) => !preload.names.includes(name));
    if (late.length > 0) {
      // Not a refusal: pyflare runs the second maker (quietly).
      if (preload.told) {
        const names = late.map((name) => name.split("/").pop());
        this.#log("info", `[pyflare] starting without a memory snapshot: native extension modules (${names.join(", ")}) were loaded after start`);
        this.refuse(`native extension modules loaded after start: ${names.join(", ")}`, true);
      }
      return;
    }
    const record = Buffer.from(JSON.stringify(dylibRecord(py._module, preload.names, preload.table)), "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32LE(record.length);
    let bytes;
    try {
      bytes = py.makeMemorySnapshot({
        serializer: (object) => {
          for (const [name, value] of Object.entries(this.#known)) {
            if (object === value) return { pyflare: name };
          }
          throw new Error("a Python global holds a JavaScript object created at import time");
        },
      });
    } catch (error) {
      this.#log("info", `[pyflare] starting without a memory snapshot: ${error.message}`);
      this.refuse(error.message, true);
      return;
    }
    // Written after the worker is ready, off the start's critical path, and
    // without blocking the event loop (the CPU watchdog is running by then).
    const path = this.#path;
    const log = this.#log;
    const write = async () => {
      try {
        // pyflare makes the folder; the host may write only its own files
        // there (emulator/src/host/sandbox.rs).
        if (!existsSync(dirname(path))) await mkdir(dirname(path), { recursive: true });
        const parts = [Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), record, length];
        const digest = await sha256InSlices(parts);
        const tmp = `${path}.tmp`;
        await writeFile(tmp, Buffer.concat([...parts, digest]));
        // pyflare renames it to `path` once it knows the worker's files did
        // not change while they were imported (emulator/src/host/supervisor.rs).
        await rename(tmp, `${path}.made`);
      } catch (error) {
        log("warn", `[pyflare] cannot write the snapshot: ${error.message}`);
      }
    };
    return { written: new Promise((resolve) => setTimeout(() => write().then(resolve), 0)) };
  }
}
