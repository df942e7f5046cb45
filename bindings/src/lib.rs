//! Cloudflare Workers bindings emulated by pyflare.
//!
//! Each binding is one folder under `src/` with the same files (`mod.rs`,
//! `config.rs`, `call.rs`, `store.rs`, `limits.rs`, `error.rs`, `shim.mjs`,
//! `tests.rs`, and `cli.rs` when it has a command) and one line in
//! `bindings!`. Everything else in pyflare asks the
//! [`BindingKind`] trait: the config key it reads (parsed by
//! [`config::parse_entries`]), the JavaScript shim that gives the worker
//! Cloudflare's API shape, how to open its storage, and its `pyflare
//! <binding> ...` command ([`BindingCli`]). Time reaches bindings only
//! through [`Clock`].
#![warn(missing_docs)]

pub mod binding;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod storage;
pub mod tasks;

pub use binding::{
    Binding, BindingConfigError, BindingKind, BodyError, BodyStream, CollectError, Inspect,
    InspectError, OpenContext, Reply,
};
pub use cli::{BindingCli, CliContext, CliError};
pub use clock::{Clock, ManualClock, OffsetClock, SystemClock};
pub use error::{CfError, JsClass, WireError};
pub use tasks::{Delivered, Delivery, EventSink, Task, TaskContext};

/// Declares every binding module and the [`BINDINGS`] registry from one list.
macro_rules! bindings {
    ($($module:ident :: $kind:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every binding pyflare emulates, in the order `pyflare dev` lists them.
        pub static BINDINGS: &[&dyn BindingKind] = &[$(&$module::$kind),*];
    };
}

// Adding a binding is one folder under `src/` and one line here.
bindings! {
    kv::KvNamespaces,
    d1::D1Databases,
    queues::Queues,
    durable_objects::DurableObjects,
    r2::R2Buckets,
    assets::StaticAssets,
}

/// The binding kind that reads `config_key` from the wrangler config.
pub fn kind_for_config_key(config_key: &str) -> Option<&'static dyn BindingKind> {
    BINDINGS
        .iter()
        .copied()
        .find(|k| k.config_key() == config_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_folder_is_registered() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        for entry in std::fs::read_dir(src).unwrap() {
            let path = entry.unwrap().path();
            if path.join("mod.rs").is_file() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let lib = include_str!("lib.rs");
                assert!(
                    lib.contains(&format!("    {name}::")),
                    "{name}/ is not in bindings!"
                );
            }
        }
    }

    #[test]
    fn shims_call_only_declared_methods() {
        for kind in BINDINGS {
            let shim = kind.shim();
            let mut rest = shim;
            while let Some(at) = rest.find("#call(\"") {
                rest = &rest[at + 7..];
                let method = &rest[..rest.find('"').unwrap()];
                assert!(
                    kind.methods().contains(&method),
                    "{} shim calls undeclared method {method}",
                    kind.wire_name()
                );
            }
        }
    }
}
