//! A file of the assets folder read as rules, again when it changes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The rules of one file (`T::default()` while there is none).
#[derive(Debug, Default)]
pub struct RulesFile<T> {
    cached: Mutex<Option<Cached<T>>>,
}

/// Rules read, and the modification time and length of the file they came from.
#[derive(Debug)]
struct Cached<T> {
    stamp: (Option<SystemTime>, u64),
    rules: Arc<T>,
}

impl<T: Default> RulesFile<T> {
    /// The rules of `file` as it is now, read with `parse` when it changed.
    pub fn rules(&self, file: &Path, parse: impl FnOnce(&str) -> T) -> Arc<T> {
        let Ok(meta) = std::fs::metadata(file) else {
            return Arc::default();
        };
        let stamp = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = cached.as_ref()
            && hit.stamp == stamp
        {
            return hit.rules.clone();
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let rules = Arc::new(parse(&text));
        *cached = Some(Cached {
            stamp,
            rules: rules.clone(),
        });
        rules
    }
}
