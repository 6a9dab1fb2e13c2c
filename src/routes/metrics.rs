//! `GET /metrics`: Prometheus text format.

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::store::JobStatus;

/// The states every job goes through: each has a series, zero when no job
/// is in it (so that `delta()` and alerts see a state's first job).
const STATES: [JobStatus; 5] = [
    JobStatus::Pending,
    JobStatus::Queued,
    JobStatus::Building,
    JobStatus::Completed,
    JobStatus::Failed,
];

pub fn get(app: &App, _req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let jobs = app.store.count_by_status().ok().map(|mut counts| {
        for s in STATES {
            if !counts.iter().any(|(state, _)| state == s.as_str()) {
                counts.push((s.as_str().to_string(), 0));
            }
        }
        counts
    });
    Ok(Reply::text(
        200,
        "text/plain; version=0.0.4",
        app.metrics.render(jobs.as_deref()),
    ))
}
