// How JS and Python errors are described to pyflare.

/** Traceback frames of pyflare's own glue and of importlib's machinery. */
const HIDDEN_FRAMES = [
  '  File "/session/pyflare/_pyflare/',
  '  File "<frozen importlib._bootstrap',
  '  File "/lib/python314.zip/importlib/__init__.py"',
];

/**
 * Drops the frames that are pyflare's or importlib's from a Python
 * traceback, so the user's own frames and the error are what they read.
 */
export function cleanTraceback(text) {
  const out = [];
  let hiding = false;
  for (const line of text.split("\n")) {
    if (line.startsWith('  File "')) {
      hiding = HIDDEN_FRAMES.some((prefix) => line.startsWith(prefix));
    } else if (!line.startsWith("    ")) {
      hiding = false;
    }
    if (!hiding) out.push(line);
  }
  return out.join("\n");
}

/** The Python traceback for a PythonError, else the JS stack. */
export function describeError(error) {
  if (error && error.constructor && error.constructor.name === "PythonError") {
    return cleanTraceback(String(error.message).trimEnd());
  }
  if (error instanceof Error) return String(error.stack || `${error.name}: ${error.message}`);
  return String(error);
}

/**
 * What the client and the log are shown of an error that ends a request:
 * the Python traceback, or a JS error's name and message. A JS error that
 * reaches this far comes from pyflare's host (a request Node cannot build,
 * a handler that returned no Response), and its stack is the host's own
 * files, not the worker's.
 */
export function describeForClient(error) {
  if (error instanceof Error && error.constructor?.name !== "PythonError") {
    return `${error.name}: ${error.message}`;
  }
  return describeError(error);
}

/**
 * An error as another part of the worker sees it (a caller of a Durable
 * Object's method): its class name and message, a Python traceback without
 * pyflare's own frames.
 */
export function describeForCaller(error) {
  if (error?.constructor?.name === "PythonError") return { name: "Error", message: describeError(error) };
  if (typeof error?.message === "string") return { name: String(error.name ?? "Error"), message: error.message };
  return { name: "Error", message: String(error) };
}
