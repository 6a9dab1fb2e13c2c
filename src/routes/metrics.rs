//! `GET /metrics`: Prometheus text format.

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Request};

pub fn get(app: &App, _req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let jobs = app.store.count_by_status().ok();
    Ok(Reply::text(
        200,
        "text/plain; version=0.0.4",
        app.metrics.render(jobs.as_deref()),
    ))
}
