//! The simulator's shared state: configuration knobs, recorded submissions
//! and deliveries, and accepted jobs. One [`Sim`] behind an `Arc` is shared by
//! every request thread and delivery thread.

use crate::package::BadPackage;
use crate::realhub::Hub;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// How forced submission failures (`fail_next`) are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailKind {
    #[serde(rename = "500")]
    Internal,
    #[serde(rename = "rate_limited")]
    RateLimited,
    #[serde(rename = "publish_limit")]
    PublishLimit,
    #[serde(rename = "account_required")]
    AccountRequired,
    #[serde(rename = "auth_invalid")]
    AuthInvalid,
}

impl FailKind {
    /// HTTP status, error code and message of the simulated failure.
    pub fn response(self) -> (u16, &'static str, &'static str) {
        match self {
            FailKind::Internal => (500, "INTERNAL", "simulated failure"),
            FailKind::RateLimited => (429, "RATE_LIMITED", "rate limited, retry later"),
            FailKind::PublishLimit => (
                429,
                "PUBLISH_LIMIT_REACHED",
                "publish limit reached for this license",
            ),
            FailKind::AccountRequired => (
                403,
                "ACCOUNT_REQUIRED",
                "an account is required for this license",
            ),
            FailKind::AuthInvalid => (401, "AUTH_INVALID", "invalid authentication"),
        }
    }
}

/// Every knob of the simulator (`GET /_sim/config`).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub license_key: String,
    pub build_delay_ms: u64,
    pub artifact_size: u64,
    pub fail_next: u32,
    pub fail_kind: FailKind,
    pub hang_next: u32,
    pub hang_ms: u64,
    pub never_callback: bool,
    pub wrong_checksum: bool,
    pub deliver_twice: bool,
    pub raw_body: bool,
    pub throttle_bytes_per_sec: u64,
    // Real-hub mode (the default) and its traps; see main.rs.
    pub callbacks: bool,
    pub accounts: Vec<String>,
    pub device_bound_keys: bool,
    pub rate_limit_per_hour: u32,
    pub publish_limit_per_month: u32,
    pub stage_delay_ms: u64,
    pub program_size: u64,
    pub expires_in_secs: u64,
    pub close_subscribers_after_ms: u64,
    pub compile_failure: bool,
    pub upload_failure: bool,
    pub wrong_sha256: bool,
    pub raw_program: bool,
    pub download_delay_ms: u64,
    pub download_hang: bool,
    pub download_throttle_bytes_per_sec: u64,
    pub bad_package: Option<BadPackage>,
    pub zip_bomb_size: u64,
    pub log_lines: u64,
    pub log_line_delay_ms: u64,
    pub queue_updates: u64,
    pub extra_log_lines: Vec<String>,
}

impl Config {
    pub fn new(license_key: String, build_delay_ms: u64, artifact_size: u64) -> Self {
        Config {
            license_key,
            build_delay_ms,
            artifact_size,
            fail_next: 0,
            fail_kind: FailKind::Internal,
            hang_next: 0,
            hang_ms: 0,
            never_callback: false,
            wrong_checksum: false,
            deliver_twice: false,
            raw_body: false,
            throttle_bytes_per_sec: 0,
            callbacks: false,
            accounts: Vec::new(),
            device_bound_keys: false,
            rate_limit_per_hour: 0,
            publish_limit_per_month: 0,
            stage_delay_ms: 10,
            program_size: 4096,
            expires_in_secs: 600,
            close_subscribers_after_ms: 0,
            compile_failure: false,
            upload_failure: false,
            wrong_sha256: false,
            raw_program: false,
            download_delay_ms: 0,
            download_hang: false,
            download_throttle_bytes_per_sec: 0,
            bad_package: None,
            zip_bomb_size: 1024 * 1024 * 1024,
            log_lines: 0,
            log_line_delay_ms: 0,
            queue_updates: 0,
            extra_log_lines: Vec::new(),
        }
    }

    pub fn apply(&mut self, p: ConfigPatch) {
        if let Some(v) = p.license_key {
            self.license_key = v;
        }
        if let Some(v) = p.build_delay_ms {
            self.build_delay_ms = v;
        }
        if let Some(v) = p.artifact_size {
            self.artifact_size = v;
        }
        if let Some(v) = p.fail_next {
            self.fail_next = v;
        }
        if let Some(v) = p.fail_kind {
            self.fail_kind = v;
        }
        if let Some(v) = p.hang_next {
            self.hang_next = v;
        }
        if let Some(v) = p.hang_ms {
            self.hang_ms = v;
        }
        if let Some(v) = p.never_callback {
            self.never_callback = v;
        }
        if let Some(v) = p.wrong_checksum {
            self.wrong_checksum = v;
        }
        if let Some(v) = p.deliver_twice {
            self.deliver_twice = v;
        }
        if let Some(v) = p.raw_body {
            self.raw_body = v;
        }
        if let Some(v) = p.throttle_bytes_per_sec {
            self.throttle_bytes_per_sec = v;
        }
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = p.$f { self.$f = v; })* };
        }
        set!(
            callbacks,
            accounts,
            device_bound_keys,
            rate_limit_per_hour,
            publish_limit_per_month,
            stage_delay_ms,
            program_size,
            expires_in_secs,
            close_subscribers_after_ms,
            compile_failure,
            upload_failure,
            wrong_sha256,
            raw_program,
            download_delay_ms,
            download_hang,
            download_throttle_bytes_per_sec,
            bad_package,
            zip_bomb_size,
            log_lines,
            log_line_delay_ms,
            queue_updates,
            extra_log_lines
        );
    }
}

/// Body of `POST /_sim/config`: any subset of the knobs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    pub license_key: Option<String>,
    pub build_delay_ms: Option<u64>,
    pub artifact_size: Option<u64>,
    pub fail_next: Option<u32>,
    pub fail_kind: Option<FailKind>,
    pub hang_next: Option<u32>,
    pub hang_ms: Option<u64>,
    pub never_callback: Option<bool>,
    pub wrong_checksum: Option<bool>,
    pub deliver_twice: Option<bool>,
    pub raw_body: Option<bool>,
    pub throttle_bytes_per_sec: Option<u64>,
    pub callbacks: Option<bool>,
    pub accounts: Option<Vec<String>>,
    pub device_bound_keys: Option<bool>,
    pub rate_limit_per_hour: Option<u32>,
    pub publish_limit_per_month: Option<u32>,
    pub stage_delay_ms: Option<u64>,
    pub program_size: Option<u64>,
    pub expires_in_secs: Option<u64>,
    pub close_subscribers_after_ms: Option<u64>,
    pub compile_failure: Option<bool>,
    pub upload_failure: Option<bool>,
    pub wrong_sha256: Option<bool>,
    pub raw_program: Option<bool>,
    pub download_delay_ms: Option<u64>,
    pub download_hang: Option<bool>,
    pub download_throttle_bytes_per_sec: Option<u64>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    pub bad_package: Option<Option<BadPackage>>,
    pub zip_bomb_size: Option<u64>,
    pub log_lines: Option<u64>,
    pub log_line_delay_ms: Option<u64>,
    pub queue_updates: Option<u64>,
    pub extra_log_lines: Option<Vec<String>>,
    /// An action, not a setting: `true` forgets every job now (as
    /// `POST /_sim/forget`).
    pub forget_jobs: Option<bool>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// One `POST /api/v1/build` as received (`GET /_sim/submissions`).
#[derive(Debug, Clone, Serialize)]
pub struct Submission {
    pub seq: u64,
    /// HTTP status the simulator answered.
    pub status: u16,
    /// Error code answered, when not 200.
    pub error_code: Option<String>,
    pub job_id: Option<String>,
    pub license_key: Option<String>,
    /// Parsed JSON when valid, else the raw string; null when absent.
    pub manifest: serde_json::Value,
    pub credentials: Option<String>,
    /// Hex SHA-256 of the decoded tarball; null unless fully decoded.
    pub tarball_sha256: Option<String>,
    /// Decoded tarball bytes; null unless fully decoded.
    pub tarball_size: Option<u64>,
    pub artifact_upload_url: Option<String>,
    /// Part names, in order.
    pub fields: Vec<String>,
    pub authorization_header: Option<String>,
    pub content_type: Option<String>,
    pub received_at_ms: u64,
}

/// One artifact delivery attempt to a job's `artifact_upload_url`
/// (`GET /_sim/deliveries`).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub seq: u64,
    pub job_id: String,
    pub target: String,
    /// "auto" (after the build delay) or "manual" (`POST /_sim/deliver/...`).
    pub kind: &'static str,
    /// 1, or 2 for the second copy under `deliver_twice`.
    pub attempt: u32,
    /// Verbatim, including the query string.
    pub url: String,
    pub content_type: &'static str,
    pub artifact_name: String,
    /// Response status; null on a transport error.
    pub status: Option<u16>,
    /// Response body (at most 4 KiB, lossy UTF-8); null on a transport error.
    pub response_body: Option<String>,
    /// Hex SHA-256 of the (decoded) bytes sent.
    pub sha256: String,
    /// What `x-artifact-sha256` said (differs under `wrong_checksum`).
    pub header_sha256: String,
    /// Decoded bytes sent.
    pub size: u64,
    pub error: Option<String>,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

/// An accepted build job.
#[derive(Debug, Clone)]
pub struct Job {
    pub job_id: String,
    pub app_name: String,
    pub version: String,
    pub targets: Vec<String>,
    pub tarball_sha256: [u8; 32],
    pub upload_url: String,
    /// Sent as `Authorization: Bearer <hub_token>` with every delivery.
    pub hub_token: String,
    /// The automatic delivery has finished (or a manual one happened).
    pub delivered: bool,
}

pub struct Inner {
    pub config: Config,
    pub submissions: Vec<Submission>,
    pub deliveries: Vec<Delivery>,
    pub jobs: HashMap<String, Job>,
    /// Real-hub state: jobs as the WebSocket sees them, downloads, limits.
    pub hub: Hub,
    /// Bumped by `POST /_sim/reset`: work started before it is dropped.
    pub generation: u64,
    next_submission_seq: u64,
    next_delivery_seq: u64,
}

/// Everything shared between threads.
pub struct Sim {
    inner: Mutex<Inner>,
    /// Config given on the command line, restored by reset.
    initial: Config,
    pub agent: ureq::Agent,
    /// `http://ADDR:PORT` of the HTTP server (download URLs).
    pub base_url: String,
}

impl Sim {
    pub fn new(initial: Config, agent: ureq::Agent, base_url: String) -> Self {
        Sim {
            inner: Mutex::new(Inner {
                config: initial.clone(),
                submissions: Vec::new(),
                deliveries: Vec::new(),
                jobs: HashMap::new(),
                hub: Hub::default(),
                generation: 0,
                next_submission_seq: 1,
                next_delivery_seq: 1,
            }),
            initial,
            agent,
            base_url,
        }
    }

    /// Locks the state; a panicked thread does not make it unusable.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    pub fn reset(&self) {
        let mut s = self.lock();
        s.config = self.initial.clone();
        s.submissions.clear();
        s.deliveries.clear();
        s.jobs.clear();
        s.hub.forget();
        s.hub.clear_limits();
        s.generation += 1;
        s.next_submission_seq = 1;
        s.next_delivery_seq = 1;
    }

    /// Jobs accepted whose artifact has not been delivered yet.
    pub fn queued(&self) -> usize {
        self.lock().jobs.values().filter(|j| !j.delivered).count()
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }
}

impl Inner {
    /// Appends a submission, assigning its sequence number.
    pub fn record_submission(&mut self, mut sub: Submission) {
        sub.seq = self.next_submission_seq;
        self.next_submission_seq += 1;
        self.submissions.push(sub);
    }

    /// Appends a delivery, assigning its sequence number, and returns it.
    pub fn record_delivery(&mut self, mut d: Delivery) -> Delivery {
        d.seq = self.next_delivery_seq;
        self.next_delivery_seq += 1;
        self.deliveries.push(d.clone());
        d
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS random number generator failed");
    b
}

/// A random version-4 UUID, e.g. `0b8f…-…-4…-[89ab]…-…`.
pub fn uuid_v4() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
