//! R2 errors with Cloudflare's exact messages.
//!
//! The R2 service answers an error as a message and a `v4code`; workerd's
//! client throws it as `Error("<method>: <message> (<v4code>)")`. Messages
//! and codes: workers-sdk packages/miniflare/src/workers/r2/errors.worker.ts;
//! the method names are workerd's (src/workerd/api/r2-bucket.c++).

use crate::error::{CfError, JsClass};

/// The method named at the start of an error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `head`.
    Head,
    /// `get`.
    Get,
    /// `put`.
    Put,
    /// `delete`.
    Delete,
    /// `list`.
    List,
    /// `createMultipartUpload`.
    CreateMultipartUpload,
    /// `uploadPart`.
    UploadPart,
    /// `completeMultipartUpload`.
    CompleteMultipartUpload,
    /// `abortMultipartUpload`.
    AbortMultipartUpload,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Head => "head",
            Self::Get => "get",
            Self::Put => "put",
            Self::Delete => "delete",
            Self::List => "list",
            Self::CreateMultipartUpload => "createMultipartUpload",
            Self::UploadPart => "uploadPart",
            Self::CompleteMultipartUpload => "completeMultipartUpload",
            Self::AbortMultipartUpload => "abortMultipartUpload",
        })
    }
}

/// What the R2 service answered, without the method.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's message is its documentation")]
pub enum Failure {
    #[error("We encountered an internal error. Please try again. (10001)")]
    Internal(String),
    #[error("The specified object name is not valid. (10020)")]
    InvalidObjectName,
    #[error("MaxKeys params must be positive integer <= 1000. (10022)")]
    InvalidMaxKeys,
    #[error("Your metadata headers exceed the maximum allowed metadata size. (10012)")]
    MetadataTooLarge,
    #[error("Your proposed upload exceeds the maximum allowed object size. (100100)")]
    EntityTooLarge,
    #[error("Your proposed upload is smaller than the minimum allowed object size. (10011)")]
    EntityTooSmall,
    #[error("The specified multipart upload does not exist. (10024)")]
    NoSuchUpload,
    #[error("One or more of the specified parts could not be found. (10025)")]
    InvalidPart,
    #[error(
        "The {algorithm} checksum you specified did not match what we received.\nYou provided a {algorithm} checksum with value: {provided}\nActual {algorithm} was: {actual} (10037)"
    )]
    BadDigest {
        algorithm: &'static str,
        provided: String,
        actual: String,
    },
    #[error("The requested range is not satisfiable (10039)")]
    InvalidRange,
    #[error("There was a problem with the multipart upload. (10048)")]
    BadUpload,
}

/// Everything an R2 call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum R2Error {
    /// The service's answer, as workerd throws it.
    #[error("{op}: {failure}")]
    Service {
        /// The method.
        op: Op,
        /// What failed.
        failure: Failure,
    },
    /// A `TypeError` workerd raises before any request.
    #[error("{0}")]
    Type(String),
}

impl R2Error {
    /// The service's `failure` of method `op`.
    pub fn service(op: Op, failure: Failure) -> Self {
        Self::Service { op, failure }
    }
}

impl CfError for R2Error {
    fn js_class(&self) -> JsClass {
        match self {
            Self::Service { .. } => JsClass::Error,
            Self::Type(_) => JsClass::TypeError,
        }
    }
}

#[cfg(test)]
#[test]
fn r2_error_messages_match_cloudflare() {
    let table: &[(R2Error, &str)] = &[
        (
            R2Error::service(Op::Get, Failure::InvalidObjectName),
            "get: The specified object name is not valid. (10020)",
        ),
        (
            R2Error::service(Op::Get, Failure::InvalidRange),
            "get: The requested range is not satisfiable (10039)",
        ),
        (
            R2Error::service(Op::List, Failure::InvalidMaxKeys),
            "list: MaxKeys params must be positive integer <= 1000. (10022)",
        ),
        (
            R2Error::service(Op::Put, Failure::MetadataTooLarge),
            "put: Your metadata headers exceed the maximum allowed metadata size. (10012)",
        ),
        (
            R2Error::service(Op::CompleteMultipartUpload, Failure::EntityTooSmall),
            "completeMultipartUpload: Your proposed upload is smaller than the minimum allowed object size. (10011)",
        ),
        (
            R2Error::service(
                Op::Put,
                Failure::BadDigest {
                    algorithm: "MD5",
                    provided: "00".into(),
                    actual: "ff".into(),
                },
            ),
            "put: The MD5 checksum you specified did not match what we received.\nYou provided a MD5 checksum with value: 00\nActual MD5 was: ff (10037)",
        ),
    ];
    for (error, message) in table {
        assert_eq!(&error.to_string(), message);
        assert_eq!(error.js_class(), JsClass::Error);
    }
}
