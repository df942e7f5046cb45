// Compatibility flags as the Python SDK reads them from
// `_cloudflare_compat_flags`: an object naming every flag pyflare knows,
// each true or false for this worker. A flag is on when the worker lists it,
// or when its default-on date is on or before the worker's
// compatibility_date, unless the worker lists its `no_` opposite.
//
// Dates from cloudflare/workerd src/workerd/io/compatibility-date.capnp
// (see shared spec python-runtime.md §0).

const DEFAULT_ON = {
  set_tostring_tag: "2024-09-26",
  python_workers_force_new_vendor_path: "2025-08-11",
  python_no_global_handlers: "2025-08-14",
  python_workflows: "2025-09-20",
  python_workers_20250116: "2025-09-29",
  python_dedicated_snapshot: "2025-10-16",
  python_check_rng_state: "2025-12-16",
  python_request_headers_preserve_commas: "2026-02-17",
  python_workflows_implicit_dependencies: "2026-02-25",
  enable_python_external_sdk: "2026-04-21",
  python_process_pth_files: "2026-05-26",
  websocket_standard_binary_type: "2026-03-17",
};

const OPT_IN = ["python_workers", "python_workers_20260610", "python_workers_20260817", "experimental"];

/** Builds the flags object from the worker's date and listed flags. */
export function compatFlags(date, listed) {
  const flags = {};
  const set = new Set(listed);
  for (const name of OPT_IN) flags[name] = set.has(name);
  for (const [name, since] of Object.entries(DEFAULT_ON)) {
    flags[name] = set.has(name) || (!set.has(`no_${name}`) && date >= since);
  }
  for (const name of set) {
    if (!name.startsWith("no_") && !(name in flags)) flags[name] = true;
  }
  return flags;
}
