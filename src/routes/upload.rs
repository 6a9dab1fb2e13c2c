//! `POST /upload` (docs/api.md): authenticate, validate the parameters,
//! refuse an over-long declared body, and hand the body to `publish`.

use crate::app::App;
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::links;
use crate::publish::{self, Upload};
use crate::store::{AttemptResult, DEFAULT_ENTRY};
use crate::validate::{self, Query};
use serde_json::json;

/// Checks `UPLOAD_SECRET` given as `Authorization: Bearer …` or `?token=…`.
fn authorize(app: &App, req: &Request<'_>, query: &Query) -> Result<(), ApiError> {
    let secret = app.cfg.upload_secret.expose();
    if secret.is_empty() {
        return Ok(());
    }
    match req.bearer().or(query.get("token")) {
        Some(p) if validate::secret_matches(p, secret) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("invalid upload secret")),
        None => Err(ApiError::unauthorized(
            "missing upload secret: send Authorization: Bearer <secret> or ?token=<secret>",
        )),
    }
}

fn params(app: &App, q: &Query) -> Result<Upload, ApiError> {
    let name = q.get("name").unwrap_or_default().to_string();
    validate::name_like(&name, "name")?;
    let version = q.get("version").unwrap_or_default().to_string();
    validate::name_like(&version, "version")?;
    let display_name = q.get("displayName").map(str::to_string);
    if let Some(d) = &display_name {
        validate::text(d, "displayName", 256)?;
    }
    let description = q.get("description").map(str::to_string);
    if let Some(d) = &description {
        validate::text(d, "description", 4096)?;
    }
    let entry = q.get("entry").unwrap_or(DEFAULT_ENTRY).to_string();
    validate::entry(&entry)?;
    // What the rules allow, the database's columns may not hold.
    let limits = app.store.column_limits();
    validate::fits(&name, "name", limits.name)?;
    validate::fits(&version, "version", limits.version)?;
    if let Some(d) = &display_name {
        validate::fits(d, "displayName", limits.display_name)?;
    }
    validate::fits(&entry, "entry", limits.entry)?;
    let platforms = match q.get("platforms") {
        Some(p) => validate::platforms(p)?,
        None => app.cfg.platforms.clone(),
    };
    Ok(Upload {
        name,
        version,
        display_name,
        description,
        entry,
        platforms,
    })
}

pub fn post(app: &App, req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let query = Query::parse(req.query())?;
    authorize(app, req, &query)?;
    let up = params(app, &query)?;
    req.check_declared_length(app.cfg.max_body_bytes)?;
    if req.header("content-type").is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/")
    }) {
        return Err(ApiError::bad_request(
            "multipart/form-data is not accepted: send the raw .tar.gz as the request body \
             (curl --data-binary @plugin.tar.gz, not curl -F)",
        ));
    }
    let (name, version) = (up.name.clone(), up.version.clone());
    let published = publish::upload(app, up, req.body())?;
    let builds: Vec<serde_json::Value> = published
        .builds
        .iter()
        .map(|(job, result)| match result {
            Some(AttemptResult::Accepted { hub_job_id }) => {
                json!({"platform": job.platform, "jobId": hub_job_id, "status": "queued"})
            }
            Some(AttemptResult::Failed { error }) => {
                json!({"platform": job.platform, "jobId": "", "status": "failed", "error": error})
            }
            Some(AttemptResult::Retry { error, .. }) => json!({
                "platform": job.platform, "jobId": "", "status": "pending",
                "error": format!("{error}; hone-build keeps trying"),
            }),
            None => json!({
                "platform": job.platform, "jobId": "", "status": "pending",
                "error": "not accepted by Perry Hub yet; hone-build keeps trying",
            }),
        })
        .collect();
    let public = &app.cfg.public_url;
    Ok(Reply::json(
        200,
        &json!({
            "success": true, "pluginName": name, "version": version, "builds": builds,
            "statusUrl": links::status_url(public, &name, &version),
            "buildUrl": links::build_url(public, &name, &version),
        }),
    ))
}
