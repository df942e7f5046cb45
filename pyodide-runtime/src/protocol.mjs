// Protocol messages between pyflare (Rust) and this host, mirror of
// emulator/src/host/protocol.rs. Bump PROTOCOL_VERSION on both sides when a
// message is added, removed or changes shape.

export const PROTOCOL_VERSION = 6;

/** Bytes a body sender may have in flight before the receiver grants credit. */
export const BODY_WINDOW_BYTES = 1024 * 1024;

// Messages pyflare sends to the host (`ToHost`), by `type`:
//   hello      { version, worker, standby }        first message; host answers ready | load_error,
//                                                  or with standby, standby_ready and waits for load
//   load       { snapshot_path }                   a standby host imports the worker now
//   event      { id, kind, ... }                   an event for the worker, by kind:
//     kind fetch      { method, url, headers, has_body }  host answers response (a body
//                                                  follows as chunks of stream id) or event_result
//     kind scheduled  { cron, scheduled_time }     a cron trigger; host answers event_result
//                                                  (queue, Durable Object and alarm events are
//                                                  further kinds, not further messages)
//   body_end   { stream, error? }                  end of a request body (chunks carry stream = id),
//                                                  or of a call_reply body sent as it is produced
//   credit     { stream, bytes }                   the consumer took `bytes` of a response body or
//                                                  of a call's body
//   cancel     { stream }                          the client went away, or the binding stopped
//                                                  reading a call's body; stop sending that body
//   ping       { seq }
//   call_reply { id, ok? , error?: { class, message }, has_body }  answer to `call`; a body
//                                                  follows as chunks, ended by a last-chunk frame
//                                                  or body_end; the host grants credit as it reads
//   ws_message { stream, text? , binary? }          the client of the WebSocket a fetch answered
//                                                  (stream = the fetch's id) sent a message;
//                                                  binary as base64
//   ws_close   { stream, code, reason, was_clean } that client closed it, or its connection broke
//   shutdown   {}
//
// Messages the host sends to pyflare (`FromHost`):
//   ready      { version, startup_ms, origin }     origin: restored | baseline | fresh | standby
//   standby_ready { startup_ms }                   runtime prepared, waiting for load
//   snapshot_done { packages, dylibs }             a host started with worker.take_snapshots
//                                                  has written them; pyflare stops it. packages:
//                                                  the modules of python_modules/ the worker
//                                                  imported (for its packages snapshot); dylibs:
//                                                  the native modules it loaded (for a maker
//                                                  that loads them first: worker.dylibs)
//   load_error { message }                         the worker failed to load (Python traceback)
//   response   { id, status, status_text, headers, has_body, body_length?, websocket? }
//                                                  body_length: the whole body was at hand;
//                                                  websocket: a 101 carrying a WebSocket
//   ws_send    { stream, text? , binary? }          the worker sent a message on that WebSocket
//   ws_close   { stream, code?, reason }           the worker closed it
//   body_end   { stream, error? }                  or, without an error, a last-chunk frame
//   credit     { stream, bytes }                   the worker took `bytes` of a request body or of
//                                                  a call_reply body
//   event_result { id, outcome, message?, result? }  how an event ended without a response:
//                                                  outcome ok | exception (message: the Python
//                                                  traceback); result: what the kind returns
//                                                  (scheduled: { no_retry })
//   pong       { seq }
//   log        { level, message }
//   call       { id, binding, method, args, has_body }  a binding method call; a body
//                                                       follows as chunks under credit,
//                                                       ended by a last-chunk frame or
//                                                       body_end (error: the call fails)
//   cancel     { stream }                          the worker stopped reading a call_reply body
//   abort      { reason, message }                 the isolate cannot go on (reason: fatal |
//                                                  memory_limit); pyflare fails its events
//                                                  and replaces this host
