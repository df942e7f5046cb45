//! The assets folder, read as it is on disk at each request: a file saved
//! is served at once, with a new ETag.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokio::io::AsyncReadExt;

use crate::binding::{BodyError, BodyStream};

/// Files of the folder that are never served: the metafiles of Cloudflare's
/// asset upload.
const METAFILES: [&str; 3] = ["/.assetsignore", "/_headers", "/_redirects"];

/// Bytes read from an asset file at a time.
const READ_CHUNK: usize = 64 * 1024;

/// One file of the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Where it is on disk.
    pub file: PathBuf,
    /// Its ETag, without quotes: it changes when the file does.
    pub etag: String,
    /// Its `Content-Type`, from its extension, if it has a known one.
    pub content_type: Option<String>,
}

/// The assets folder.
#[derive(Debug, Clone)]
pub struct AssetDir {
    root: PathBuf,
    /// `root` with its links resolved: no file outside it is served.
    real_root: PathBuf,
}

impl AssetDir {
    /// The folder at `root`.
    pub fn new(root: PathBuf) -> Self {
        let real_root = root.canonicalize().unwrap_or_else(|_| root.clone());
        Self { root, real_root }
    }

    /// The folder's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The asset at `path` (a decoded URL path, from `/`), if a file is
    /// there. Not one: a folder, a symbolic link (an upload skips them), a
    /// metafile, or a path that would leave the folder.
    pub fn find(&self, path: &str) -> Option<Asset> {
        let relative = path.strip_prefix('/')?;
        if relative.is_empty() || METAFILES.contains(&path) {
            return None;
        }
        let mut file = self.root.clone();
        for segment in relative.split('/') {
            if segment.is_empty()
                || segment == "."
                || segment == ".."
                || segment.contains(['\\', '\0'])
            {
                return None;
            }
            file.push(segment);
        }
        let meta = std::fs::symlink_metadata(&file).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        // A folder on the way may be a link out of the assets folder.
        let real = file.canonicalize().ok()?;
        if !real.starts_with(&self.real_root) {
            return None;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let mut hash = Sha256::new();
        hash.update(path.as_bytes());
        hash.update(modified.to_le_bytes());
        hash.update(meta.len().to_le_bytes());
        let etag = hex::encode(&hash.finalize()[..16]);
        Some(Asset {
            content_type: content_type(relative),
            file,
            etag,
        })
    }
}

/// The `Content-Type` of a file by its name, as Cloudflare's asset upload
/// gives it: the `mime` package's type for its extension, with
/// `; charset=utf-8` after a `text/` type. None for a name without an
/// extension (`LICENSE`, `.env`) or with an unknown one.
pub fn content_type(name: &str) -> Option<String> {
    let last = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let (stem, extension) = last.rsplit_once('.')?;
    if stem.is_empty() {
        return None;
    }
    let found = content_types().get(extension)?;
    Some(
        if found.starts_with("text/") && !found.contains("charset") {
            format!("{found}; charset=utf-8")
        } else {
            (*found).to_owned()
        },
    )
}

/// Extension to type, from `content_types.txt`: the table of the `mime`
/// npm package (4.0), which wrangler and Miniflare use for assets.
fn content_types() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("content_types.txt")
            .lines()
            .filter_map(|line| line.split_once(' '))
            .collect()
    })
}

/// The bytes of `file`, read as the consumer takes them.
pub async fn read(file: &Path) -> std::io::Result<BodyStream> {
    let file = tokio::fs::File::open(file).await?;
    Ok(BodyStream::from_stream(futures::stream::unfold(
        Some(file),
        |file| async move {
            let mut file = file?;
            let mut buffer = vec![0; READ_CHUNK];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), Some(file)))
                }
                Err(e) => Some((Err(BodyError(format!("cannot read the asset: {e}"))), None)),
            }
        },
    )))
}
