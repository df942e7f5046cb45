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
