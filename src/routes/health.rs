//! `GET /health` (docs/api.md): 200 when the store answers a trivial query, 503 otherwise.

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Request};
use serde_json::json;

pub fn get(app: &App, _req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let store = app.store.kind();
    let ok = match app.store.ping() {
        Ok(()) if app.is_migrated() => true,
        Ok(()) => app.try_migrate(),
        Err(e) => {
            log::warn!("health: {e}");
            false
        }
    };
    let (code, status) = if ok {
        (200, "ok")
    } else {
        (503, "unavailable")
    };
    let r = Reply::json(
        code,
        &json!({
            "status": status,
            "service": "hone-build",
            "version": env!("CARGO_PKG_VERSION"),
            "store": store,
        }),
    );
    Ok(if ok {
        r
    } else {
        r.with_header("Retry-After", "5")
    })
}
