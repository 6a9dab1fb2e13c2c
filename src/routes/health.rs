//! `GET /health` (SPEC 2): 200 when the store answers a trivial query, 503 otherwise.

use crate::app::App;
use crate::error::ApiError;
use crate::router::{Ctx, Reply};
use serde_json::json;

pub fn get(app: &App, _ctx: &mut Ctx<'_>) -> Result<Reply, ApiError> {
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
    let mut r = Reply::json(
        code,
        &json!({
            "status": status,
            "service": "hone-build",
            "version": env!("CARGO_PKG_VERSION"),
            "store": store,
        }),
    );
    if !ok {
        r.headers.push(("Retry-After", "5".to_string()));
    }
    Ok(r)
}
