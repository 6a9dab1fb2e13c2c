//! `POST /artifact/:callbackId` (docs/api.md): a patched hub's worker
//! delivers a compiled program. Authenticated by the job's own token (or,
//! for jobs of the old server, `<name>-<version>-<platform>` with
//! UPLOAD_SECRET); the body goes through `intake`.

use crate::app::App;
use crate::body::Encoding;
use crate::error::ApiError;
use crate::http::{Reply, Request};
use crate::intake;
use crate::store::{Deliverer, Job, LegacyLookup};
use crate::validate::{self, Query};
use serde_json::json;

/// Finds the job a callback id names and checks the token.
fn resolve(app: &App, callback_id: &str, token: Option<&str>) -> Result<Job, ApiError> {
    if callback_id.len() > 300
        || !callback_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ApiError::bad_request(
            "callback id may contain only letters, digits, '.', '_' and '-'",
        ));
    }
    if callback_id.bytes().all(|b| b.is_ascii_digit()) {
        let id: i64 = callback_id
            .parse()
            .map_err(|_| ApiError::not_found("unknown build job"))?;
        let job = app
            .store
            .job_by_id(id)?
            .ok_or_else(|| ApiError::not_found("unknown build job"))?;
        let Some(token) = token else {
            return Err(ApiError::unauthorized("missing callback token"));
        };
        let expected = job.callback_token.as_deref().unwrap_or_default();
        if !validate::secret_matches(token, expected) {
            return Err(ApiError::unauthorized(
                "invalid callback token for this job",
            ));
        }
        return Ok(job);
    }
    // The old server's form: authenticated by UPLOAD_SECRET, resolved in the database.
    let secret = app.cfg.upload_secret.expose();
    match token {
        Some(t) if validate::secret_matches(t, secret) => {}
        Some(_) => return Err(ApiError::unauthorized("invalid callback token")),
        None => return Err(ApiError::unauthorized("missing callback token")),
    }
    match app.store.job_by_legacy_callback(callback_id)? {
        LegacyLookup::Found(job) => Ok(*job),
        LegacyLookup::NotFound => Err(ApiError::not_found("unknown build job")),
        LegacyLookup::Ambiguous(_) => Err(ApiError::bad_request(
            "callback id is ambiguous; use the job id form",
        )),
    }
}

pub fn post(app: &App, req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let query = Query::parse(req.query())?;
    let job = resolve(app, req.param(0), query.get("token"))?;
    req.check_declared_length(app.cfg.max_body_bytes)?;
    if let (Some(target), Some(platform)) = (req.header("x-artifact-target"), job.platform())
        && target != platform.hub_name()
        && target != platform.id()
    {
        log::warn!(
            "job {}: x-artifact-target {target:?} differs from the job's platform {platform}",
            job.id
        );
    }
    let expected_sha = req.header("x-artifact-sha256").map(str::to_string);
    let raw = req.header("Content-Type").is_some_and(|ct| {
        ct.trim()
            .to_ascii_lowercase()
            .starts_with("application/octet-stream")
    });
    let encoding = if raw { Encoding::Raw } else { Encoding::Base64 };
    // The token `resolve` checked (none for the old form); checked again
    // when the job is completed, in case a new upload reset it meanwhile.
    let by = Deliverer::Callback(job.callback_token.as_deref());
    let stored = intake::deliver(app, &job, by, req.body(), encoding, expected_sha.as_deref())?;
    Ok(Reply::json(
        200,
        &json!({
            "success": true,
            "plugin": job.plugin_name,
            "version": job.version,
            "platform": stored.platform.id(),
            "size": stored.size,
            "sha256": stored.sha256,
        }),
    ))
}
