//! `GET /status/:name/:version` (docs/api.md): a version's builds. The
//! answer for a version whose builds all completed never changes again and
//! is served from memory after the first time (see `cache`).

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::links;
use crate::store::{self, Job, JobStatus};
use crate::validate;
use serde_json::{Map, Value, json};

pub fn get(app: &App, req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let (name, version) = (req.param(0), req.param(1));
    validate::name_like(name, "name")?;
    validate::name_like(version, "version")?;
    if let Some(body) = app.completed.get(name, version) {
        return Ok(Reply::bytes(200, "application/json", body.to_vec()));
    }
    let jobs = app.store.version_jobs(name, version)?;
    if jobs.is_empty() {
        return Err(ApiError::no_builds(name, version));
    }
    let builds: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut b = Map::new();
            b.insert("platform".into(), json!(j.platform));
            b.insert("hubJobId".into(), json!(j.hub_job_id));
            b.insert("status".into(), json!(j.status));
            b.insert("createdAt".into(), json!(j.created_at));
            if let Some(t) = j.completed_at {
                b.insert("completedAt".into(), json!(t));
            }
            if let Some(m) = &j.error_message {
                b.insert("errorMessage".into(), json!(m));
            }
            if let Some(s) = j.size_bytes {
                b.insert("size".into(), json!(s));
            }
            if let Some(s) = &j.sha256 {
                b.insert("sha256".into(), json!(s));
            }
            b.insert("attempts".into(), json!(j.attempts));
            live_fields(j, &mut b);
            b.insert(
                "logUrl".into(),
                json!(links::log_url(
                    &app.cfg.public_url,
                    name,
                    version,
                    &j.platform
                )),
            );
            Value::Object(b)
        })
        .collect();
    let overall = store::overall(jobs.iter().map(|j| &j.status));
    let reply = Reply::json(
        200,
        &json!({"pluginName": name, "version": version, "builds": builds, "overall": overall}),
    );
    if overall == "completed" && jobs.iter().all(|j| j.hub_job_id.is_some()) {
        app.completed.put(name, version, &reply.body);
    }
    Ok(reply)
}

/// What a build under way adds (the fields of the old server's answer keep
/// their meaning): for a job the hub is building, the `stage`, `progress`
/// (0–100), `message` and `queuePosition` it last reported; for a job
/// waiting to be submitted again, `nextAttemptAt` (Unix seconds) and
/// `lastError` (the latest failed attempt's error).
fn live_fields(j: &Job, b: &mut Map<String, Value>) {
    match j.status {
        JobStatus::Queued | JobStatus::Building => {
            let p = &j.progress;
            if let Some(v) = &p.stage {
                b.insert("stage".into(), json!(v));
            }
            if let Some(v) = p.percent {
                b.insert("progress".into(), json!(v));
            }
            if let Some(v) = &p.message {
                b.insert("message".into(), json!(v));
            }
            if let Some(v) = p.queue_position {
                b.insert("queuePosition".into(), json!(v));
            }
        }
        JobStatus::Pending if j.attempts > 0 => {
            b.insert("nextAttemptAt".into(), json!(j.next_attempt_at_ms / 1000));
            if let Some(e) = &j.error_message {
                b.insert("lastError".into(), json!(e));
            }
        }
        _ => {}
    }
}
