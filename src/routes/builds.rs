//! `GET /builds/:name/:version` (docs/api.md): the build page, an HTML
//! page rendered by `buildpage`, with the headers that keep it to itself:
//! its Content-Security-Policy, no MIME sniffing, never cached.

use crate::app::App;
use crate::buildpage;
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::validate;

pub fn get(app: &App, req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let (name, version) = (req.param(0), req.param(1));
    validate::name_like(name, "name")?;
    validate::name_like(version, "version")?;
    let page = buildpage::page(app, name, version)?;
    Ok(Reply::text(200, "text/html; charset=utf-8", page.html)
        .with_header("Content-Security-Policy", buildpage::csp())
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Cache-Control", "no-store")
        .with_header("Referrer-Policy", "no-referrer"))
}
