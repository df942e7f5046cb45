//! Opens the bindings a worker's config declares, through the registry in
//! `pyflare_bindings::BINDINGS`, and describes them to the host.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::{ConfigError, WorkerConfig};
use crate::host::BindingMap;
use crate::host::protocol::BindingInit;
use pyflare_bindings::assets::Assets;
use pyflare_bindings::{BINDINGS, Clock, OpenContext};

/// The live bindings and what the host needs to build `env` from them.
#[derive(Debug, Default, Clone)]
pub struct OpenBindings {
    pub map: BindingMap,
    pub init: Vec<BindingInit>,
    /// One banner line per binding.
    pub banner: Vec<String>,
    /// The worker's static assets (`assets`), which pyflare's front serves
    /// before the worker runs.
    pub assets: Option<Arc<Assets>>,
}

/// Variables meant for bindings (`PYFLARE_*`, `AWS_*`): pyflare's
/// environment, then the worker's vars and `.dev.vars`, which win.
pub(crate) fn binding_settings(
    config: &WorkerConfig,
) -> std::collections::BTreeMap<String, String> {
    let ours = |name: &str| name.starts_with("PYFLARE_") || name.starts_with("AWS_");
    let mut settings: std::collections::BTreeMap<String, String> =
        std::env::vars().filter(|(name, _)| ours(name)).collect();
    for (name, value) in &config.vars {
        if let (true, Some(value)) = (ours(name), value.as_str()) {
            settings.insert(name.clone(), value.to_owned());
        }
    }
    settings
}

/// Opens every binding in `config` with its state under `persist_root`.
pub fn open(
    config: &WorkerConfig,
    persist_root: &Path,
    clock: Arc<dyn Clock>,
) -> Result<OpenBindings, ConfigError> {
    let cx = OpenContext {
        persist_root: persist_root.to_path_buf(),
        clock,
        config: Arc::new(config.rest.clone()),
        settings: binding_settings(config),
        project_root: config.root.clone(),
        compatibility_date: config.compatibility_date.clone(),
        compatibility_flags: config.compatibility_flags.clone(),
    };
    let mut out = OpenBindings {
        map: HashMap::new(),
        ..Default::default()
    };
    if let Some(value) = config.rest.get("assets") {
        let assets = Assets::open(value, &cx).map_err(|source| ConfigError::Binding {
            file: config.file.clone(),
            source,
        })?;
        // With a binding, the binding's own line says it.
        if assets.binding().is_none() {
            out.banner.push(assets.describe());
        }
        out.assets = Some(Arc::new(assets));
    }
    for kind in BINDINGS {
        let Some(value) = config.rest.get(kind.config_key()) else {
            continue;
        };
        let opened = kind
            .open(value, &cx)
            .map_err(|source| ConfigError::Binding {
                file: config.file.clone(),
                source,
            })?;
        for binding in opened {
            let name = binding.name().to_owned();
            if out.map.contains_key(&name) || config.vars.contains_key(&name) {
                return Err(ConfigError::Invalid {
                    file: config.file.clone(),
                    message: format!("the name {name} is bound twice"),
                });
            }
            out.banner.push(binding.describe());
            out.init.push(BindingInit {
                name: name.clone(),
                kind: kind.wire_name().to_owned(),
                shim: kind.shim().to_owned(),
                options: binding.shim_options(),
            });
            out.map.insert(name, binding);
        }
    }
    Ok(out)
}
