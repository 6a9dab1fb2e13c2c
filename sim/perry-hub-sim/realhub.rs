//! Real-hub mode: jobs as today's Perry Hub runs them. Accepting a
//! submission (auth, device-bound keys, limits), the worker that plays a
//! build over the WebSocket (stages, logs, packages, `artifact_ready`,
//! `complete`), and the single-use base64 downloads.

use crate::package::{self, Built, Kind, Spec};
use crate::state::{Config, Sim, hex, now_ms, uuid_v4};
use crate::worker::{Base64Reader, Throttled};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response, StatusCode};

/// What a WebSocket connection thread is told to do.
#[derive(Debug)]
pub enum Out {
    Text(String),
    Close,
}

/// One artifact a job's worker uploaded.
#[derive(Debug, Clone)]
pub struct ArtifactRec {
    pub target: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub announced_sha256: String,
    pub program: Option<(String, String, u64)>,
    /// Announced to subscribers (the windows intermediate is not).
    pub relayed: bool,
    pub downloads: u32,
    pub download_url: String,
    pub expires_at_ms: u64,
}

#[derive(Debug)]
pub struct RealJob {
    pub job_id: String,
    /// "real" or "callbacks".
    pub mode: &'static str,
    pub manifest: Value,
    pub targets: Vec<String>,
    /// queued, running, succeeded, failed, cancelled
    pub state: &'static str,
    pub error: Option<String>,
    pub identity: String,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    pub cancel_requested: bool,
    pub artifacts: Vec<ArtifactRec>,
    pub subscribers: Vec<Sender<Out>>,
    pub subscriptions: u32,
}

impl RealJob {
    pub fn finished(&self) -> bool {
        self.finished_at_ms.is_some()
    }

    pub fn to_json(&self) -> Value {
        let artifacts: Vec<Value> = self
            .artifacts
            .iter()
            .map(|a| {
                let (path, psha, psize) = match &a.program {
                    Some((p, s, n)) => (json!(p), json!(s), json!(n)),
                    None => (Value::Null, Value::Null, Value::Null),
                };
                json!({
                    "target": a.target, "name": a.name, "size": a.size,
                    "sha256": a.sha256, "announced_sha256": a.announced_sha256,
                    "program_path": path, "program_sha256": psha, "program_size": psize,
                    "relayed": a.relayed, "downloads": a.downloads,
                    "download_url": a.download_url, "expires_at_ms": a.expires_at_ms,
                })
            })
            .collect();
        json!({
            "job_id": self.job_id, "mode": self.mode, "manifest": self.manifest,
            "targets": self.targets, "state": self.state, "error": self.error,
            "identity": self.identity, "created_at_ms": self.created_at_ms,
            "finished_at_ms": self.finished_at_ms,
            "subscribers": self.subscribers.len(), "subscriptions": self.subscriptions,
            "artifacts": artifacts,
        })
    }
}

/// A download token.
pub struct Download {
    pub job_id: String,
    pub index: usize,
    pub built: Built,
    pub name: String,
    pub expires_at_ms: u64,
}

/// The hub's memory.
#[derive(Default)]
pub struct Hub {
    pub jobs: HashMap<String, RealJob>,
    /// Job ids in acceptance order.
    pub order: Vec<String>,
    pub downloads: HashMap<String, Download>,
    /// Device-bound license key → bundle id.
    pub bindings: HashMap<String, String>,
    /// Identity → acceptance times (ms) in the last hour.
    pub accepted: HashMap<String, VecDeque<u64>>,
    /// Identity → successful builds.
    pub publishes: HashMap<String, u32>,
}

impl Hub {
    /// Drops every job and download, closing subscriber sockets (a hub
    /// restart). Running builds notice and stop.
    pub fn forget(&mut self) {
        for job in self.jobs.values() {
            for s in &job.subscribers {
                let _ = s.send(Out::Close);
            }
        }
        self.jobs.clear();
        self.order.clear();
        self.downloads.clear();
        self.accepted.clear();
    }

    /// Forgets bindings and publish counts too (`/_sim/reset`).
    pub fn clear_limits(&mut self) {
        self.bindings.clear();
        self.publishes.clear();
    }

    pub fn jobs_json(&self) -> Value {
        Value::Array(
            self.order
                .iter()
                .filter_map(|id| self.jobs.get(id))
                .map(RealJob::to_json)
                .collect(),
        )
    }

    /// Sends `msg` to every subscriber of the job; false when the job is
    /// gone (forgotten).
    pub fn broadcast(&mut self, job_id: &str, msg: &Value) -> bool {
        let Some(job) = self.jobs.get_mut(job_id) else {
            return false;
        };
        let text = msg.to_string();
        job.subscribers
            .retain(|s| s.send(Out::Text(text.clone())).is_ok());
        true
    }

    /// Registers a job (both modes) and answers its queue position.
    pub fn insert(&mut self, job: RealJob) -> usize {
        self.order.push(job.job_id.clone());
        self.jobs.insert(job.job_id.clone(), job);
        self.jobs.values().filter(|j| !j.finished()).count()
    }

    /// Ends a job: state, and `complete` to subscribers.
    fn finish(&mut self, job_id: &str, state: &'static str, artifacts: Value, started: Instant) {
        let success = state == "succeeded";
        let msg = json!({"type": "complete", "job_id": job_id, "success": success,
            "duration_secs": started.elapsed().as_secs(), "artifacts": artifacts});
        self.broadcast(job_id, &msg);
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.state = state;
            job.finished_at_ms = Some(now_ms());
            if success {
                *self.publishes.entry(job.identity.clone()).or_default() += 1;
            }
        }
    }
}

/// A refused submission: status, code, message, extra error fields.
pub type Refusal = (u16, &'static str, String, Option<Value>);

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
    (status, code, message.into(), None)
}

const HUB_TARGETS: [&str; 5] = ["macos", "linux", "windows", "ios", "android"];

/// What a real-mode submission carried.
pub struct Submitted<'a> {
    pub manifest: Option<&'a str>,
    pub license_key: Option<&'a str>,
    pub tarball: Option<[u8; 32]>,
    pub authorization: Option<&'a str>,
}

/// Accepts or refuses a submission; on success starts its build and
/// answers `{"job_id","ws_url","position"}`.
pub fn accept(sim: &Arc<Sim>, sub: Submitted<'_>) -> Result<Value, Refusal> {
    let manifest_raw = sub
        .manifest
        .ok_or_else(|| refuse(400, "BAD_REQUEST", "manifest is required"))?;
    let tarball = sub
        .tarball
        .ok_or_else(|| refuse(400, "BAD_REQUEST", "tarball_b64 is required"))?;
    let manifest: Value = match serde_json::from_str(manifest_raw) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(refuse(400, "BAD_REQUEST", "manifest must be a JSON object")),
    };
    let targets: Vec<String> = match manifest.get("targets") {
        None | Some(Value::Null) => vec!["macos".into()],
        Some(Value::Array(a)) if a.is_empty() => vec!["macos".into()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| match t.as_str() {
                Some(s) if HUB_TARGETS.contains(&s) => Ok(s.to_string()),
                _ => Err(refuse(
                    400,
                    "BAD_REQUEST",
                    format!("unsupported target {t} (no worker has it)"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(refuse(400, "BAD_REQUEST", "targets must be an array")),
    };
    let bundle_id = manifest
        .get("bundle_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();

    let mut s = sim.lock();
    let config = s.config.clone();
    let bearer = sub
        .authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let (identity, license) = match (bearer, sub.license_key.filter(|k| !k.is_empty())) {
        (Some(token), _) => {
            if !config.accounts.iter().any(|a| a == token) {
                return Err(refuse(401, "AUTH_INVALID", "Invalid or expired API token"));
            }
            (format!("token:{token}"), None)
        }
        (None, Some(key)) => {
            if key != config.license_key {
                return Err(refuse(401, "LICENSE_INVALID", "Invalid license key"));
            }
            (format!("license:{key}"), Some(key.to_string()))
        }
        (None, None) => {
            return Err(refuse(
                400,
                "BAD_REQUEST",
                "license_key or an Authorization bearer token is required",
            ));
        }
    };
    if let Some(key) = &license
        && config.device_bound_keys
        && let Some(bound) = s.hub.bindings.get(key)
        && *bound != bundle_id
    {
        let login_url = format!("{}/login", sim.base_url);
        return Err((
            403,
            "ACCOUNT_REQUIRED",
            format!(
                "This license key is bound to {bound}; building {bundle_id} requires an account"
            ),
            Some(json!({"login_url": login_url})),
        ));
    }
    let now = now_ms();
    let window = s.hub.accepted.entry(identity.clone()).or_default();
    while window
        .front()
        .is_some_and(|t| now.saturating_sub(*t) >= 3_600_000)
    {
        window.pop_front();
    }
    if config.rate_limit_per_hour > 0 && window.len() >= config.rate_limit_per_hour as usize {
        return Err(refuse(
            429,
            "RATE_LIMITED",
            format!(
                "Rate limit exceeded: {} builds per hour",
                config.rate_limit_per_hour
            ),
        ));
    }
    let publishes = s.hub.publishes.get(&identity).copied().unwrap_or(0);
    if config.publish_limit_per_month > 0 && publishes >= config.publish_limit_per_month {
        return Err((
            429,
            "PUBLISH_LIMIT_REACHED",
            "Monthly publish limit reached".into(),
            Some(json!({"usage": {"publishes": publishes,
                "limit": config.publish_limit_per_month, "period": period(now)}})),
        ));
    }
    s.hub
        .accepted
        .entry(identity.clone())
        .or_default()
        .push_back(now);
    if let Some(key) = license
        && config.device_bound_keys
    {
        s.hub.bindings.entry(key).or_insert(bundle_id);
    }
    let job_id = uuid_v4();
    let position = s.hub.insert(RealJob {
        job_id: job_id.clone(),
        mode: "real",
        manifest: manifest.clone(),
        targets: targets.clone(),
        state: "queued",
        error: None,
        identity,
        created_at_ms: now,
        finished_at_ms: None,
        cancel_requested: false,
        artifacts: Vec::new(),
        subscribers: Vec::new(),
        subscriptions: 0,
    });
    drop(s);
    eprintln!("perry-hub-sim: accepted job {job_id} (real hub) {targets:?}");
    let sim2 = Arc::clone(sim);
    let id = job_id.clone();
    let spawned = thread::Builder::new()
        .name(format!("build-{job_id}"))
        .spawn(move || play_build(&sim2, &id, &manifest, &targets, tarball, &config));
    if let Err(e) = spawned {
        eprintln!("perry-hub-sim: cannot start build thread: {e}");
    }
    Ok(json!({"job_id": job_id, "ws_url": "/ws", "position": position}))
}

/// `YYYY-MM` of a unix time in ms (UTC).
fn period(ms: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}")
}

/// The Linux worker's checks of the manifest: the message of the first
/// failure.
pub fn worker_validation(manifest: &Value) -> Result<(), String> {
    let field = |k: &str| -> Result<String, String> {
        match manifest.get(k).and_then(Value::as_str) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(format!("Invalid manifest: {k} is required")),
        }
    };
    let app_name = field("app_name")?;
    if app_name.chars().count() > 200
        || !app_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_'))
    {
        return Err(format!("Invalid app_name: {app_name:?}"));
    }
    let bundle_id = field("bundle_id")?;
    if !bundle_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("Invalid bundle_id: {bundle_id:?}"));
    }
    let version = field("version")?;
    if !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("Invalid version: {version:?}"));
    }
    let entry = field("entry")?;
    if entry.starts_with('/') || entry.contains("..") {
        return Err(format!("Invalid entry: {entry:?}"));
    }
    Ok(())
}

/// The worker side of one job.
struct Player<'a> {
    sim: &'a Sim,
    job_id: &'a str,
    config: &'a Config,
    started: Instant,
    /// `{name,size,sha256}` of the relayed artifacts, for `complete`.
    done: Vec<Value>,
}

/// Why a build stops early.
enum Stop {
    /// Forgotten by the hub: stop silently.
    Gone,
    /// Cancelled: error + complete(false) sent.
    Cancelled,
}

impl Player<'_> {
    /// Sends a message (with `job_id`) to subscribers after checking the
    /// job is still known and not cancelled.
    fn send(&self, mut msg: Value) -> Result<(), Stop> {
        msg["job_id"] = json!(self.job_id);
        let mut s = self.sim.lock();
        let cancelled = match s.hub.jobs.get(self.job_id) {
            None => return Err(Stop::Gone),
            Some(j) => j.cancel_requested,
        };
        if cancelled {
            let e = json!({"type": "error", "job_id": self.job_id, "code": "INTERNAL_ERROR",
                "message": "Build cancelled"});
            s.hub.broadcast(self.job_id, &e);
            if let Some(j) = s.hub.jobs.get_mut(self.job_id) {
                j.error = Some("Build cancelled".into());
            }
            s.hub
                .finish(self.job_id, "cancelled", json!([]), self.started);
            return Err(Stop::Cancelled);
        }
        s.hub.broadcast(self.job_id, &msg);
        Ok(())
    }

    fn pause(&self) {
        thread::sleep(Duration::from_millis(self.config.stage_delay_ms));
    }

    fn stage(&self, stage: &str, message: &str) -> Result<(), Stop> {
        self.pause();
        self.send(json!({"type": "stage", "stage": stage, "message": message}))
    }

    fn progress(&self, stage: &str, percent: u32, message: Option<&str>) -> Result<(), Stop> {
        self.send(
            json!({"type": "progress", "stage": stage, "percent": percent, "message": message}),
        )
    }

    fn log(&self, stage: &str, line: &str, stream: &str) -> Result<(), Stop> {
        self.send(json!({"type": "log", "stage": stage, "line": line, "stream": stream}))
    }

    /// `error` then `complete(false)`; the job failed.
    fn fail(&mut self, message: &str) -> Result<(), Stop> {
        self.send(json!({"type": "error", "code": "INTERNAL_ERROR", "message": message}))?;
        let mut s = self.sim.lock();
        if let Some(j) = s.hub.jobs.get_mut(self.job_id) {
            j.error = Some(message.to_string());
        }
        s.hub.finish(self.job_id, "failed", json!([]), self.started);
        Ok(())
    }

    /// Records an uploaded artifact with a download token and, unless
    /// hidden, announces `artifact_ready`.
    fn upload(
        &mut self,
        target: &str,
        name: String,
        built: Built,
        relay: bool,
    ) -> Result<(), Stop> {
        let token = uuid_v4();
        let url = format!("{}/api/v1/dl/{token}", self.sim.base_url);
        let sha = hex(&built.sha256);
        let mut announced = built.sha256;
        if self.config.wrong_sha256 {
            announced[0] ^= 0xff;
        }
        let announced = hex(&announced);
        let expires_at_ms = now_ms() + self.config.expires_in_secs * 1000;
        let rec = ArtifactRec {
            target: target.to_string(),
            name: name.clone(),
            size: built.size,
            sha256: sha.clone(),
            announced_sha256: announced.clone(),
            program: built
                .program
                .as_ref()
                .map(|(p, s, n)| (p.clone(), hex(s), *n)),
            relayed: relay,
            downloads: 0,
            download_url: url.clone(),
            expires_at_ms,
        };
        {
            let mut s = self.sim.lock();
            let Some(job) = s.hub.jobs.get_mut(self.job_id) else {
                return Err(Stop::Gone);
            };
            let index = job.artifacts.len();
            job.artifacts.push(rec);
            // Expired tokens release their (unlinked) package files.
            let now = now_ms();
            s.hub.downloads.retain(|_, d| d.expires_at_ms > now);
            s.hub.downloads.insert(
                token,
                Download {
                    job_id: self.job_id.to_string(),
                    index,
                    built: built.clone(),
                    name: name.clone(),
                    expires_at_ms,
                },
            );
        }
        if relay {
            self.send(json!({"type": "artifact_ready", "target": target,
                "artifact_name": name, "artifact_size": built.size, "sha256": announced,
                "download_url": url, "expires_in_secs": self.config.expires_in_secs}))?;
            self.done
                .push(json!({"name": name, "size": built.size, "sha256": sha}));
        }
        Ok(())
    }
}

fn play_build(
    sim: &Sim,
    job_id: &str,
    manifest: &Value,
    targets: &[String],
    tarball: [u8; 32],
    config: &Config,
) {
    // Queued: wait, in small steps so that a cancel or a forget is seen.
    let queued_at = Instant::now();
    let queued_until = queued_at + Duration::from_millis(config.build_delay_ms);
    // `queue_updates` N: positions N, N-1, … 1, evenly over the wait, each
    // sent twice (a client writes a position once).
    let step = Duration::from_millis(config.build_delay_ms / (config.queue_updates + 1));
    let mut updates_sent = 0;
    while Instant::now() < queued_until {
        let mut s = sim.lock();
        match s.hub.jobs.get(job_id) {
            None => return,
            Some(j) if j.cancel_requested => break,
            Some(_) => {}
        }
        if updates_sent < config.queue_updates
            && queued_at.elapsed() >= step * (updates_sent as u32 + 1)
        {
            let position = config.queue_updates - updates_sent;
            let msg = json!({"type": "queue_update", "job_id": job_id, "position": position,
                "message": format!("{position} build(s) ahead")});
            s.hub.broadcast(job_id, &msg);
            s.hub.broadcast(job_id, &msg);
            updates_sent += 1;
        }
        drop(s);
        thread::sleep(
            Duration::from_millis(10).min(queued_until.saturating_duration_since(Instant::now())),
        );
    }
    {
        let mut s = sim.lock();
        match s.hub.jobs.get_mut(job_id) {
            Some(j) => j.state = "running",
            None => return,
        }
    }
    let mut p = Player {
        sim,
        job_id,
        config,
        started: Instant::now(),
        done: Vec::new(),
    };
    match run(&mut p, manifest, targets, tarball) {
        Ok(()) | Err(Stop::Gone) | Err(Stop::Cancelled) => {}
    }
}

fn run(
    p: &mut Player<'_>,
    manifest: &Value,
    targets: &[String],
    tarball: [u8; 32],
) -> Result<(), Stop> {
    let config = p.config;
    if let Err(message) = worker_validation(manifest) {
        p.pause();
        return p.fail(&message);
    }
    let text = |k: &str| {
        manifest
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let app_name = text("app_name");
    let entry = text("entry");
    let bin = package::binary_name(&app_name);
    for target in targets {
        let spec = Spec {
            app_name: app_name.clone(),
            bundle_id: text("bundle_id"),
            version: text("version"),
            tarball_sha256: tarball,
            target: target.clone(),
            program_size: config.program_size,
            bad: config.bad_package,
            zip_bomb_size: config.zip_bomb_size,
        };
        p.stage("extracting", "Extracting project")?;
        p.progress("extracting", 5, Some("Extracting tarball"))?;
        p.stage("compiling", &format!("Compiling for {target}"))?;
        p.progress("compiling", 20, None)?;
        p.log(
            "compiling",
            &format!("$ perry compile {entry} -o {bin} --target {target}"),
            "stdout",
        )?;
        p.log("compiling", &format!("Compiling {entry}"), "stdout")?;
        let n = config.log_lines;
        for i in 1..=n {
            if config.log_line_delay_ms > 0 {
                thread::sleep(Duration::from_millis(config.log_line_delay_ms));
            }
            p.log(
                "compiling",
                &format!("[{i}/{n}] compiled module m{i}.ts"),
                "stdout",
            )?;
        }
        for line in &config.extra_log_lines {
            p.log("compiling", line, "stderr")?;
        }
        if config.compile_failure {
            p.log(
                "compiling",
                &format!("{entry}(3,5): error TS2304: Cannot find name 'foo'."),
                "stderr",
            )?;
            p.log(
                "compiling",
                "error: compilation failed with 1 error",
                "stderr",
            )?;
            return p.fail("Compilation failed: perry compile exited with status 1");
        }
        p.log(
            "compiling",
            &format!("Wrote {bin} ({} bytes)", config.program_size),
            "stdout",
        )?;
        p.progress("compiling", 50, Some("Compiled"))?;
        p.stage("bundling", "Packaging the app")?;
        let job_id = p.job_id;
        let name = |kind: Kind| format!("{app_name}-{job_id}.{}", kind.ext());
        // (artifact target, kind, relayed) per upload; "signing" between.
        let stages: Vec<(String, Kind, bool)> = if config.raw_program {
            vec![(target.clone(), Kind::Raw, true)]
        } else {
            match target.as_str() {
                "linux" => {
                    let tar = matches!(text("linux_format").as_str(), "tarball" | "tar.gz");
                    let kind = if tar {
                        Kind::LinuxTarball
                    } else {
                        Kind::AppImage
                    };
                    vec![("linux".into(), kind, true)]
                }
                "windows" => {
                    let portable = text("windows_distribute") == "portable";
                    let kind = if portable {
                        Kind::WindowsPortable
                    } else {
                        Kind::WindowsSetup
                    };
                    vec![
                        ("windows-precompiled".into(), Kind::Raw, false),
                        ("windows".into(), kind, true),
                    ]
                }
                "macos" => vec![
                    ("macos-precompiled".into(), Kind::MacosPrecompiled, true),
                    ("macos-sign".into(), Kind::Dmg, true),
                ],
                "ios" => vec![
                    ("ios-precompiled".into(), Kind::IosPrecompiled, true),
                    ("ios-sign".into(), Kind::IosSigned, true),
                ],
                _ => vec![("android".into(), Kind::Apk, true)],
            }
        };
        for (i, (artifact_target, kind, relay)) in stages.into_iter().enumerate() {
            if i > 0 {
                p.stage("signing", &format!("Signing for {target}"))?;
                p.progress("signing", 80, None)?;
            }
            p.progress("bundling", 60, Some(&format!("Building {}", kind.ext())))?;
            let built = match package::build(kind, &spec) {
                Ok(b) => b,
                Err(e) => return p.fail(&format!("Packaging failed: {e}")),
            };
            p.stage("uploading", "Uploading artifact")?;
            p.progress("uploading", 90, None)?;
            if config.upload_failure {
                p.send(json!({"type": "error", "code": "INTERNAL_ERROR",
                    "message": "Artifact upload failed: 500 Internal Server Error"}))?;
                break;
            }
            p.upload(&artifact_target, name(kind), built, relay)?;
        }
    }
    p.stage("complete", "Build complete")?;
    let artifacts = json!(p.done);
    let mut s = p.sim.lock();
    if !s.hub.jobs.contains_key(p.job_id) {
        return Err(Stop::Gone);
    }
    s.hub.finish(p.job_id, "succeeded", artifacts, p.started);
    Ok(())
}

/// Registers a job accepted in callbacks mode, so that WebSocket clients
/// can follow it too.
pub fn register_callback_job(
    sim: &Sim,
    job_id: &str,
    manifest: Value,
    targets: Vec<String>,
    identity: String,
) {
    sim.lock().hub.insert(RealJob {
        job_id: job_id.to_string(),
        mode: "callbacks",
        manifest,
        targets,
        state: "running",
        error: None,
        identity,
        created_at_ms: now_ms(),
        finished_at_ms: None,
        cancel_requested: false,
        artifacts: Vec::new(),
        subscribers: Vec::new(),
        subscriptions: 0,
    });
}

/// A callbacks-mode job's deliveries are over: `complete(success:true)`.
pub fn finish_callback_job(sim: &Sim, job_id: &str, started: Instant) {
    sim.lock()
        .hub
        .finish(job_id, "succeeded", json!([]), started);
}

/// Subscribes a WebSocket connection: the `job_created` answer, and the
/// `complete` of a finished job; `None` for an unknown job.
pub fn subscribe(sim: &Sim, job_id: &str, tx: Sender<Out>) -> Option<(Value, Option<Value>)> {
    let mut s = sim.lock();
    let job = s.hub.jobs.get_mut(job_id)?;
    job.subscriptions += 1;
    let created = json!({"type": "job_created", "job_id": job_id, "position": 0,
        "estimated_wait_secs": 0});
    if job.finished() {
        let success = job.state == "succeeded";
        let complete = json!({"type": "complete", "job_id": job_id, "success": success,
            "duration_secs": 0, "artifacts": []});
        return Some((created, Some(complete)));
    }
    job.subscribers.push(tx);
    Some((created, None))
}

/// `{"type":"cancel"}`: marks a running job; its worker ends it.
pub fn cancel(sim: &Sim, job_id: &str) {
    let mut s = sim.lock();
    if let Some(j) = s.hub.jobs.get_mut(job_id)
        && !j.finished()
    {
        j.cancel_requested = true;
        eprintln!("perry-hub-sim: cancel requested for job {job_id}");
    }
}

/// Never ends until a long time has passed: a hanging download.
struct Hang<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Hang<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            thread::sleep(Duration::from_secs(3600));
            return Err(io::Error::other("hung download"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn json_response(status: u16, body: &Value) -> Response<io::Cursor<Vec<u8>>> {
    Response::from_data(serde_json::to_vec(body).unwrap_or_default())
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", "application/json").expect("static"))
}

/// `GET /api/v1/dl/<token>`: answers the request itself.
pub fn download(sim: &Sim, token: &str, req: Request) {
    let now = now_ms();
    let (found, config) = {
        let mut s = sim.lock();
        let config = s.config.clone();
        // Spent before anything is read.
        let found = s
            .hub
            .downloads
            .remove(token)
            .filter(|d| d.expires_at_ms > now);
        if let Some(d) = &found
            && let Some(a) = s
                .hub
                .jobs
                .get_mut(&d.job_id)
                .and_then(|j| j.artifacts.get_mut(d.index))
        {
            a.downloads += 1;
        }
        (found, config)
    };
    let Some(d) = found else {
        eprintln!("perry-hub-sim: GET /api/v1/dl/{token} -> 404");
        let body = json!({"error": {"code": "ARTIFACT_NOT_FOUND",
            "message": "Artifact not found or expired"}});
        let _ = req.respond(json_response(404, &body));
        return;
    };
    eprintln!(
        "perry-hub-sim: download of {} ({} bytes) for job {}",
        d.name, d.built.size, d.job_id
    );
    if config.download_delay_ms > 0 {
        thread::sleep(Duration::from_millis(config.download_delay_ms));
    }
    let len = d.built.size.div_ceil(3) * 4;
    let mut body: Box<dyn Read + Send> = Box::new(Base64Reader::new(package::FileReader::new(
        Arc::clone(&d.built.file),
    )));
    if config.download_throttle_bytes_per_sec > 0 {
        body = Box::new(Throttled::new(body, config.download_throttle_bytes_per_sec));
    }
    if config.download_hang {
        body = Box::new(Hang {
            inner: body,
            left: len / 2,
        });
    }
    let headers = vec![
        Header::from_bytes("Content-Type", "text/plain").expect("static"),
        Header::from_bytes(
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", d.name),
        )
        .unwrap_or_else(|_| {
            Header::from_bytes("Content-Disposition", "attachment").expect("static")
        }),
    ];
    let response = Response::new(
        StatusCode(200),
        headers,
        body,
        usize::try_from(len).ok(),
        None,
    );
    if let Err(e) = req.respond(response) {
        eprintln!("perry-hub-sim: download of {}: {e}", d.name);
    }
}
