//! `GET /openapi.json` (docs/api.md): the OpenAPI 3.1 description of this
//! API, docs/openapi.yaml as JSON (converted by build.rs when the binary
//! is built).

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Request};

/// The description as served: docs/openapi.yaml in JSON.
pub const DESCRIPTION: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

pub fn get(_app: &App, _req: &mut Request<'_>) -> Result<Reply, ApiError> {
    Ok(Reply::bytes(
        200,
        "application/json",
        DESCRIPTION.as_bytes().to_vec(),
    ))
}
