//! `R2Call`: one variant per wire method the shim sends, and the option
//! types the shim normalizes (conditions, ranges, HTTP metadata).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A call from the R2 shim; variant names are the wire method names.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", content = "args", rename_all = "camelCase")]
pub enum R2Call {
    /// `head(key)`.
    Head {
        /// The key.
        key: String,
    },
    /// `get(key, {onlyIf, range})`.
    Get {
        /// The key.
        key: String,
        /// Conditions; on failure the object comes back without a body.
        #[serde(rename = "onlyIf", default)]
        only_if: Option<Conditional>,
        /// A range, from an `R2Range` or a `Range` header.
        #[serde(default)]
        range: Option<RangeRequest>,
    },
    /// `put(key, value, options)`; the value is the call body.
    Put {
        /// The key.
        key: String,
        /// The options.
        #[serde(flatten)]
        options: Box<PutOptions>,
    },
    /// `delete(key | keys)`.
    Delete {
        /// The keys.
        keys: Vec<String>,
    },
    /// `list(options)`.
    List(ListOptions),
    /// `createMultipartUpload(key, options)`.
    CreateMultipartUpload {
        /// The key.
        key: String,
        /// HTTP metadata of the object to be.
        #[serde(rename = "httpMetadata", default)]
        http_metadata: HttpMetadata,
        /// Custom metadata of the object to be.
        #[serde(rename = "customMetadata", default)]
        custom_metadata: BTreeMap<String, String>,
        /// Storage class.
        #[serde(rename = "storageClass", default)]
        storage_class: Option<String>,
    },
    /// `upload.uploadPart(partNumber, value)`; the value is the call body.
    UploadPart {
        /// The upload's key.
        key: String,
        /// The upload.
        #[serde(rename = "uploadId")]
        upload_id: String,
        /// 1 to 10,000.
        #[serde(rename = "partNumber")]
        part_number: i64,
    },
    /// `upload.complete(parts)`.
    CompleteMultipartUpload {
        /// The upload's key.
        key: String,
        /// The upload.
        #[serde(rename = "uploadId")]
        upload_id: String,
        /// The parts, in the caller's order.
        parts: Vec<UploadedPart>,
    },
    /// `upload.abort()`.
    AbortMultipartUpload {
        /// The upload's key.
        key: String,
        /// The upload.
        #[serde(rename = "uploadId")]
        upload_id: String,
    },
}

/// `put`'s options.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutOptions {
    /// HTTP metadata.
    #[serde(default)]
    pub http_metadata: HttpMetadata,
    /// Custom metadata.
    #[serde(default)]
    pub custom_metadata: BTreeMap<String, String>,
    /// Conditions on the object being replaced.
    #[serde(default)]
    pub only_if: Option<Conditional>,
    /// Storage class.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Expected MD5, hex.
    #[serde(default)]
    pub md5: Option<String>,
    /// Expected SHA-1, hex.
    #[serde(default)]
    pub sha1: Option<String>,
    /// Expected SHA-256, hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Expected SHA-384, hex.
    #[serde(default)]
    pub sha384: Option<String>,
    /// Expected SHA-512, hex.
    #[serde(default)]
    pub sha512: Option<String>,
}

/// `list`'s options.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListOptions {
    /// Page size.
    #[serde(default)]
    pub limit: Option<f64>,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where the previous page ended.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Groups keys by their part up to this after the prefix.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Only keys after this one.
    #[serde(default)]
    pub start_after: Option<String>,
    /// `httpMetadata`, `customMetadata`.
    #[serde(default)]
    pub include: Vec<String>,
}

/// A part named to `complete`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedPart {
    /// Its number.
    pub part_number: i64,
    /// The etag `uploadPart` answered.
    pub etag: String,
}

/// An object's HTTP metadata; `cacheExpiry` in milliseconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMetadata {
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Expires`, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_expiry: Option<f64>,
}

/// One etag of a condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Etag {
    /// `"abc"`: matches strongly and weakly.
    Strong {
        /// The etag without quotes.
        value: String,
    },
    /// `W/"abc"`: matches only weakly.
    Weak {
        /// The etag without quotes.
        value: String,
    },
    /// `*`: matches any object.
    Wildcard,
}

/// `R2Conditional` (or conditional headers), as RFC 7232 and R2 apply it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conditional {
    /// `If-Match`.
    #[serde(default)]
    pub etag_matches: Option<Vec<Etag>>,
    /// `If-None-Match`.
    #[serde(default)]
    pub etag_does_not_match: Option<Vec<Etag>>,
    /// `If-Unmodified-Since`, milliseconds.
    #[serde(default)]
    pub uploaded_before: Option<f64>,
    /// `If-Modified-Since`, milliseconds.
    #[serde(default)]
    pub uploaded_after: Option<f64>,
    /// Compare times truncated to seconds (always so for headers).
    #[serde(default)]
    pub seconds_granularity: bool,
}

fn includes(etags: &[Etag], etag: &str, weak: bool) -> bool {
    etags.iter().any(|e| match e {
        Etag::Wildcard => true,
        Etag::Strong { value } => value == etag,
        Etag::Weak { value } => weak && value == etag,
    })
}

impl Conditional {
    /// Whether the condition holds for an object with `etag` uploaded at
    /// `uploaded` (ms), or for no object. A passing `etagMatches` waives
    /// `uploadedBefore`, a passing `etagDoesNotMatch` waives `uploadedAfter`
    /// (workers-sdk packages/miniflare/src/workers/r2/validator.worker.ts).
    pub fn holds(&self, object: Option<(&str, i64)>) -> bool {
        let Some((etag, uploaded)) = object else {
            return self.etag_matches.is_none() && self.uploaded_after.is_none();
        };
        let truncate = |ms: f64| {
            if self.seconds_granularity {
                (ms / 1000.0).floor() * 1000.0
            } else {
                ms
            }
        };
        let uploaded = truncate(uploaded as f64);
        let if_match = self
            .etag_matches
            .as_ref()
            .is_none_or(|etags| includes(etags, etag, false));
        let if_none_match = self
            .etag_does_not_match
            .as_ref()
            .is_none_or(|etags| !includes(etags, etag, true));
        let modified_since = self.uploaded_after.is_none_or(|t| truncate(t) < uploaded)
            || (self.etag_does_not_match.is_some() && if_none_match);
        let unmodified_since = self.uploaded_before.is_none_or(|t| uploaded < truncate(t))
            || (self.etag_matches.is_some() && if_match);
        if_match && if_none_match && modified_since && unmodified_since
    }
}

/// A range asked of `get`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeRequest {
    /// First byte.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Bytes from `offset`.
    #[serde(default)]
    pub length: Option<f64>,
    /// The last this many bytes.
    #[serde(default)]
    pub suffix: Option<f64>,
    /// A `Range` header's value, instead of the fields above.
    #[serde(default)]
    pub header: Option<String>,
}

impl RangeRequest {
    /// The bytes `(offset, length)` of an object of `size` bytes; `None`
    /// for the whole object, [`Unsatisfiable`] when no byte can answer it.
    /// A header with several or malformed ranges gives the whole object.
    pub fn resolve(&self, size: u64) -> Result<Option<(u64, u64)>, Unsatisfiable> {
        if let Some(header) = &self.header {
            return Ok(parse_range_header(header, size));
        }
        let size_f = size as f64;
        let (mut offset, mut length) = (self.offset, self.length);
        if let Some(suffix) = self.suffix {
            if suffix <= 0.0 {
                return Err(Unsatisfiable);
            }
            let suffix = suffix.min(size_f);
            offset = Some(size_f - suffix);
            length = Some(suffix);
        }
        let offset = offset.unwrap_or(0.0);
        let length = length.unwrap_or(size_f - offset);
        if offset < 0.0 || offset > size_f || length <= 0.0 {
            return Err(Unsatisfiable);
        }
        let length = length.min(size_f - offset);
        Ok(Some((offset as u64, length as u64)))
    }
}

/// A range no byte of the object can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

/// One `bytes=` range of a `Range` header, clamped to `size`.
fn parse_range_header(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.trim().split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        if suffix == 0 || size == 0 {
            return None;
        }
        let suffix = suffix.min(size);
        return Some((size - suffix, suffix));
    }
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() {
        size.checked_sub(1)?
    } else {
        end.parse::<u64>().ok()?.min(size.checked_sub(1)?)
    };
    if start > end {
        return None;
    }
    Some((start, end - start + 1))
}
