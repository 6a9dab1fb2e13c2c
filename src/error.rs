//! The one error type of request handling, and its single conversion into
//! the JSON error body of docs/api.md (`{"error": "...", "code": "..."}`).

use std::fmt;

/// An error answered to a client: status, machine code, human message.
/// The message must never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BAD_REQUEST", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "UNAUTHORIZED", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "NOT_FOUND", message)
    }
    /// 404 for a version with no builds (an unknown plugin or version):
    /// `/status`, the build page and `/logs` say it alike.
    pub fn no_builds(name: &str, version: &str) -> ApiError {
        ApiError::not_found(format!("no builds for {name} {version}"))
    }
    pub fn method_not_allowed(method: &str, path: &str) -> ApiError {
        ApiError::new(
            405,
            "METHOD_NOT_ALLOWED",
            format!("method {method} is not allowed on {path}"),
        )
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(409, code, message)
    }
    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            413,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds MAX_BODY_BYTES ({limit} bytes)"),
        )
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(503, "UNAVAILABLE", message)
        }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "INTERNAL", message)
    }

    /// The JSON body of docs/api.md.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.message, "code": self.code })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A failure of the store. `Unavailable` means the database could not be
/// reached (answered as 503); `CommitUnknown`, that the connection failed
/// while committing, so the change may or may not be recorded (503 too, but
/// files put in place for it must stay); `Other` is anything else (500).
#[derive(Debug)]
pub enum StoreError {
    Unavailable(String),
    CommitUnknown(String),
    Other(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            StoreError::CommitUnknown(m) => {
                write!(f, "database connection lost while committing: {m}")
            }
            StoreError::Other(m) => write!(f, "database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(_) => {
                log::warn!("{e}");
                ApiError::unavailable("the database is unavailable; try again later")
            }
            StoreError::CommitUnknown(_) => {
                log::warn!("{e}");
                ApiError::unavailable(
                    "the database did not confirm the change (it may be recorded); try again later",
                )
            }
            StoreError::Other(_) => {
                log::error!("{e}");
                ApiError::internal("internal database error")
            }
        }
    }
}

impl From<std::io::Error> for ApiError {
    /// A file error: logged with its operation and path (the files module
    /// puts them in the message); a full disk (or quota, or file-size
    /// limit) is 507, anything else 500. The answer names no path.
    fn from(e: std::io::Error) -> ApiError {
        use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
        if matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge) {
            log::error!("storage full: {e}");
            return ApiError::new(
                507,
                "INSUFFICIENT_STORAGE",
                "not enough space on the server to store this; try again later",
            );
        }
        log::error!("storage error: {e}");
        ApiError::internal("internal storage error")
    }
}
