//! `POST /api/v1/build`: the hub's job submission endpoint.
//!
//! The multipart body is parsed while it streams in; `tarball_b64` is decoded
//! on the fly into a SHA-256 hasher and a byte count, so a submission of
//! hundreds of megabytes uses a few hundred kilobytes of memory.

use crate::multipart::{Multipart, MultipartError, boundary_from_content_type};
use crate::realhub::{self, Submitted};
use crate::state::{FailKind, Job, Sim, Submission, hex, now_ms, random_bytes, uuid_v4};
use crate::worker::spawn_build;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Largest accepted text field (everything but `tarball_b64`).
const MAX_TEXT_FIELD: u64 = 1024 * 1024;

/// Target names the hub knows.
const HUB_TARGETS: [&str; 5] = ["macos", "linux", "windows", "ios", "android"];

/// The fields of a submission, as far as they were received.
#[derive(Default)]
struct Fields {
    names: Vec<String>,
    license_key: Option<String>,
    manifest: Option<String>,
    credentials: Option<String>,
    artifact_upload_url: Option<String>,
    /// SHA-256 and size of the decoded tarball, once fully decoded.
    tarball: Option<([u8; 32], u64)>,
}

/// Hashes and counts what is written to it.
struct HashSink {
    hasher: Sha256,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An error answer: status, code, message.
type Rejection = (u16, &'static str, String);

fn bad_request(message: impl Into<String>) -> Rejection {
    (400, "BAD_REQUEST", message.into())
}

/// `{"error":{"code":…,"message":…}}`
pub fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// Handles one submission and answers status + JSON body. `body` is the
/// request body; it is read to its end.
pub fn handle_build(
    sim: &Arc<Sim>,
    content_type: Option<String>,
    authorization: Option<String>,
    body: &mut dyn Read,
) -> (u16, Value) {
    let received_at_ms = now_ms();
    let mut fields = Fields::default();

    let parsed = match content_type.as_deref().and_then(boundary_from_content_type) {
        None => Err(bad_request("expected multipart/form-data")),
        Some(boundary) => {
            let mut mp = Multipart::new(&mut *body, &boundary);
            let r = read_fields(&mut mp, &mut fields);
            r.map_err(bad_request)
        }
    };
    // Whatever was not consumed (epilogue, or the rest after an error).
    let _ = io::copy(body, &mut io::sink());

    // Claim this submission's simulated hang and failure, if any.
    let (hang_ms, fail) = {
        let mut s = sim.lock();
        let c = &mut s.config;
        let hang = (c.hang_next > 0).then(|| {
            c.hang_next -= 1;
            c.hang_ms
        });
        let fail = (c.fail_next > 0).then(|| {
            c.fail_next -= 1;
            c.fail_kind
        });
        (hang, fail)
    };
    if let Some(ms) = hang_ms {
        eprintln!("perry-hub-sim: hanging submission for {ms} ms");
        thread::sleep(Duration::from_millis(ms));
    }

    let manifest_value = match &fields.manifest {
        None => Value::Null,
        Some(raw) => serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone())),
    };
    let mut submission = Submission {
        seq: 0,
        status: 0,
        error_code: None,
        job_id: None,
        license_key: fields.license_key.clone(),
        manifest: manifest_value,
        credentials: fields.credentials.clone(),
        tarball_sha256: fields.tarball.map(|(h, _)| hex(&h)),
        tarball_size: fields.tarball.map(|(_, n)| n),
        artifact_upload_url: fields.artifact_upload_url.clone(),
        fields: fields.names.clone(),
        authorization_header: authorization.clone(),
        content_type,
        received_at_ms,
    };

    if !sim.config().callbacks {
        // Real-hub mode: only manifest, tarball_b64, credentials and
        // license_key count; everything else was read and dropped.
        if let Some(kind) = fail {
            return reject(sim, submission, simulated_failure(kind));
        }
        if let Err(rejection) = parsed {
            return reject(sim, submission, rejection);
        }
        let accepted = realhub::accept(
            sim,
            Submitted {
                manifest: fields.manifest.as_deref(),
                license_key: fields.license_key.as_deref(),
                tarball: fields.tarball.map(|(h, _)| h),
                authorization: authorization.as_deref(),
            },
        );
        return match accepted {
            Ok(body) => {
                submission.status = 200;
                submission.job_id = body["job_id"].as_str().map(str::to_string);
                sim.lock().record_submission(submission);
                (200, body)
            }
            Err((status, code, message, extra)) => {
                let (status, mut body) = reject(sim, submission, (status, code, message));
                if let (Some(Value::Object(extra)), Some(Value::Object(err))) =
                    (extra, body.get_mut("error"))
                {
                    err.extend(extra);
                }
                (status, body)
            }
        };
    }

    let outcome = match fail {
        Some(kind) => Err(simulated_failure(kind)),
        None => parsed.and_then(|()| validate(&fields)),
    };
    let valid = match outcome {
        Ok(valid) => valid,
        Err(rejection) => return reject(sim, submission, rejection),
    };

    // License check and acceptance under one lock.
    let mut s = sim.lock();
    if fields.license_key.as_deref() != Some(s.config.license_key.as_str()) {
        drop(s);
        return reject(
            sim,
            submission,
            (401, "LICENSE_INVALID", "invalid license key".into()),
        );
    }
    let job_id = uuid_v4();
    let job = Job {
        job_id: job_id.clone(),
        app_name: valid.app_name,
        version: valid.version,
        targets: valid.targets,
        tarball_sha256: fields.tarball.map(|(h, _)| h).unwrap_or_default(),
        upload_url: fields.artifact_upload_url.clone().unwrap_or_default(),
        hub_token: hex(&random_bytes::<24>()),
        delivered: false,
    };
    s.jobs.insert(job_id.clone(), job.clone());
    let position = s.jobs.values().filter(|j| !j.delivered).count();
    let manifest_value = submission.manifest.clone();
    submission.status = 200;
    submission.job_id = Some(job_id.clone());
    s.record_submission(submission);
    let config = s.config.clone();
    let generation = s.generation;
    drop(s);
    realhub::register_callback_job(
        sim,
        &job_id,
        manifest_value,
        job.targets.clone(),
        format!("license:{}", config.license_key),
    );

    eprintln!(
        "perry-hub-sim: accepted job {job_id} ({} {} {:?}), callback {}",
        job.app_name, job.version, job.targets, job.upload_url
    );
    if config.never_callback {
        eprintln!("perry-hub-sim: never_callback: job {job_id} will not be delivered");
    } else {
        spawn_build(Arc::clone(sim), job, config, generation);
    }
    (
        200,
        json!({"job_id": job_id, "ws_url": "/ws", "position": position}),
    )
}

fn reject(
    sim: &Sim,
    mut submission: Submission,
    (status, code, message): Rejection,
) -> (u16, Value) {
    eprintln!("perry-hub-sim: rejected submission: {status} {code}: {message}");
    submission.status = status;
    submission.error_code = Some(code.to_string());
    sim.lock().record_submission(submission);
    (status, error_body(code, &message))
}

fn simulated_failure(kind: FailKind) -> Rejection {
    let (status, code, message) = kind.response();
    (status, code, message.to_string())
}

/// The parts of a valid submission needed to build it.
struct Valid {
    app_name: String,
    version: String,
    targets: Vec<String>,
}

/// Checks presence of the fields and the manifest's shape.
fn validate(f: &Fields) -> Result<Valid, Rejection> {
    let missing = |name: &str| bad_request(format!("missing field: {name}"));
    f.license_key
        .as_ref()
        .ok_or_else(|| missing("license_key"))?;
    let manifest = f.manifest.as_ref().ok_or_else(|| missing("manifest"))?;
    let credentials = f
        .credentials
        .as_ref()
        .ok_or_else(|| missing("credentials"))?;
    f.tarball.ok_or_else(|| missing("tarball_b64"))?;
    let url = f
        .artifact_upload_url
        .as_ref()
        .ok_or_else(|| missing("artifact_upload_url"))?;

    let manifest: Value = serde_json::from_str(manifest)
        .map_err(|e| bad_request(format!("invalid manifest JSON: {e}")))?;
    let string_field = |key: &str| -> Result<String, Rejection> {
        match manifest.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(bad_request(format!(
                "invalid manifest: {key} must be a non-empty string"
            ))),
        }
    };
    let app_name = string_field("app_name")?;
    let version = string_field("version")?;
    let targets = match manifest.get("targets") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|t| match t {
                Value::String(s) if HUB_TARGETS.contains(&s.as_str()) => Ok(s.clone()),
                other => Err(bad_request(format!(
                    "invalid manifest: unsupported target {other} (expected one of {})",
                    HUB_TARGETS.join(", ")
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(bad_request(
                "invalid manifest: targets must be a non-empty array",
            ));
        }
    };

    match serde_json::from_str::<Value>(credentials) {
        Ok(Value::Object(_)) => {}
        _ => return Err(bad_request("invalid credentials: expected a JSON object")),
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad_request(
            "invalid artifact_upload_url: expected an http(s) URL",
        ));
    }
    Ok(Valid {
        app_name,
        version,
        targets,
    })
}

/// Reads every part into `fields`; an error message for a 400 otherwise.
fn read_fields<R: Read>(mp: &mut Multipart<R>, fields: &mut Fields) -> Result<(), String> {
    while let Some(part) = mp.next_part().map_err(|e| describe_io_error(&e, None))? {
        let name = part.name;
        fields.names.push(name.clone());
        let slot = match name.as_str() {
            "license_key" => &mut fields.license_key,
            "manifest" => &mut fields.manifest,
            "credentials" => &mut fields.credentials,
            "artifact_upload_url" => &mut fields.artifact_upload_url,
            "tarball_b64" => {
                fields.tarball = None;
                let mut decoder = base64::read::DecoderReader::new(mp.part_reader(), &STANDARD);
                let mut sink = HashSink {
                    hasher: Sha256::new(),
                };
                let size = io::copy(&mut decoder, &mut sink)
                    .map_err(|e| describe_io_error(&e, Some("tarball_b64")))?;
                fields.tarball = Some((sink.hasher.finalize().into(), size));
                continue;
            }
            // Unknown parts are skipped by the next `next_part`.
            _ => continue,
        };
        let mut raw = Vec::new();
        mp.part_reader()
            .take(MAX_TEXT_FIELD + 1)
            .read_to_end(&mut raw)
            .map_err(|e| describe_io_error(&e, Some(&name)))?;
        if raw.len() as u64 > MAX_TEXT_FIELD {
            return Err(format!(
                "field {name} is larger than {MAX_TEXT_FIELD} bytes"
            ));
        }
        let text =
            String::from_utf8(raw).map_err(|_| format!("field {name} is not valid UTF-8"))?;
        *slot = Some(text);
    }
    Ok(())
}

/// Message for an error met while reading the body or a part of it.
fn describe_io_error(e: &io::Error, field: Option<&str>) -> String {
    if let Some(inner) = e.get_ref() {
        if let Some(m) = inner.downcast_ref::<MultipartError>() {
            return m.to_string();
        }
        if let Some(d) = inner.downcast_ref::<base64::DecodeError>() {
            return format!("{} is not valid base64: {d}", field.unwrap_or("field"));
        }
    }
    format!("error reading request body: {e}")
}
