// How JS and Python errors are described to pyflare.

/** The Python traceback for a PythonError, else the JS stack. */
export function describeError(error) {
  if (error && error.constructor && error.constructor.name === "PythonError") {
    return String(error.message).trimEnd();
  }
  if (error instanceof Error) return String(error.stack || `${error.name}: ${error.message}`);
  return String(error);
}
