//! Errors as the worker sees them: a JavaScript class and a message,
//! which the shim rethrows as `new globalThis[class](message)`.

use serde::Serialize;

/// The JavaScript error class Cloudflare throws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JsClass {
    /// `Error`.
    Error,
    /// `TypeError`.
    TypeError,
    /// `RangeError`.
    RangeError,
}

/// A binding error with Cloudflare's exact message and class.
pub trait CfError: std::error::Error {
    /// The class Cloudflare throws for this error.
    fn js_class(&self) -> JsClass;

    /// The error as it travels to the host.
    fn to_wire(&self) -> WireError {
        WireError {
            class: self.js_class(),
            message: self.to_string(),
        }
    }
}

/// An error on the wire: `{"class": "TypeError", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WireError {
    /// JavaScript class to throw.
    pub class: JsClass,
    /// Message, byte for byte as Cloudflare's.
    pub message: String,
}

impl WireError {
    /// An `Error` with this message.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            class: JsClass::Error,
            message: message.into(),
        }
    }
}
