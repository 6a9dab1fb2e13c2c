//! `GET /health` (docs/api.md): 200 when the store answers a trivial query
//! and UPLOADS_DIR and PACKAGES_DIR can be written, 503 naming what is wrong
//! otherwise.

use crate::app::App;
use crate::error::{ApiError, StoreError};
use crate::files;
use crate::http::{Reply, Request};
use serde_json::json;

pub fn get(app: &App, _req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let store = app.store.kind();
    let mut problems: Vec<String> = Vec::new();
    match app.store.ping() {
        Ok(()) if app.is_migrated() => {}
        Ok(()) => {
            if !app.try_migrate() {
                problems.push("database: its tables could not be created or read".into());
            }
        }
        Err(e) => {
            log::warn!("health: {e}");
            problems.push(match &e {
                // The embedded store's messages name only its file.
                StoreError::Unavailable(m) if store == "sqlite" => format!("database: {m}"),
                _ => "database: it does not answer".into(),
            });
        }
    }
    for (key, dir) in [
        ("UPLOADS_DIR", &app.cfg.uploads_dir),
        ("PACKAGES_DIR", &app.cfg.packages_dir),
    ] {
        if let Err(e) = files::check_writable(dir) {
            log::warn!("health: {key}: {e}");
            problems.push(format!("{key} cannot be written"));
        }
    }
    let ok = problems.is_empty();
    let mut body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "service": "hone-build",
        "version": env!("CARGO_PKG_VERSION"),
        "store": store,
    });
    if !ok {
        body["problems"] = json!(problems);
    }
    let r = Reply::json(if ok { 200 } else { 503 }, &body);
    Ok(if ok {
        r
    } else {
        r.with_header("Retry-After", "5")
    })
}
