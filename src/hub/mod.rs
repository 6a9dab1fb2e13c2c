//! The Perry Hub client (docs/perry-hub.md): one `POST /api/v1/build` per job, as
//! `multipart/form-data` whose `tarball_b64` part is base64-encoded on the
//! fly from the tarball file (memory does not grow with the tarball), with
//! an exact `Content-Length`. Every outcome is classified as accepted,
//! retryable, or permanent (with the hub's own message).

pub mod message;
pub mod ws;

use crate::codec::{self, Base64Encoder};
use crate::config::Secret;
use crate::platform::Platform;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::time::Duration;

/// What the hub made of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: the hub's job id.
    Accepted(String),
    /// Worth trying again later (connection errors, timeouts, 5xx, 429 RATE_LIMITED).
    Retryable(String),
    /// Will not succeed by retrying (400, 401, 403, 429 PUBLISH_LIMIT_REACHED, …).
    Permanent(String),
}

/// One job's submission.
pub struct Submission<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub entry: &'a str,
    pub platform: Platform,
    pub tarball: &'a Path,
    pub callback_url: &'a str,
}

impl Submission<'_> {
    /// The `manifest` field. The workers refuse an `app_name` with anything
    /// but letters, digits, space, `-` and `_`, and a `version` with anything
    /// but digits and dots: they get [`hub_app_name`] and [`hub_version`]
    /// (hone-build keeps the real ones). The packaging keys ask for the
    /// simplest packages, from which `unpack` takes the program.
    pub fn manifest(&self) -> String {
        serde_json::json!({
            "app_name": hub_app_name(self.name),
            "bundle_id": format!("codes.hone.plugin.{}", self.name),
            "version": hub_version(self.version),
            "entry": self.entry,
            "targets": [self.platform.hub_name()],
            "build_type": "plugin",
            "linux_format": "tarball",
            "windows_distribute": "portable",
        })
        .to_string()
    }
}

/// The plugin name as the hub's workers accept it: every character other
/// than a letter, digit, space, `-` or `_` becomes `-` (`my.plugin` →
/// `my-plugin`). Deterministic.
pub fn hub_app_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect()
}

/// The version as the hub's workers accept it (digits and dots): the first
/// run of digits and dots, without empty parts (`1.0.0-beta.1` → `1.0.0`,
/// `v2.1` → `2.1`); `0.0.0` when there is none. Deterministic.
pub fn hub_version(version: &str) -> String {
    let start = version.find(|c: char| c.is_ascii_digit());
    let run: String = match start {
        Some(i) => version[i..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect(),
        None => String::new(),
    };
    let parts: Vec<&str> = run.split('.').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        "0.0.0".into()
    } else {
        parts.join(".")
    }
}

/// How hone-build identifies itself to the hub: an account API token
/// (preferred: not bound to one bundle id) or a license key.
#[derive(Clone, Default)]
pub struct Credentials {
    pub license_key: Secret,
    pub token: Secret,
}

#[derive(Clone)]
pub struct HubClient {
    agent: ureq::Agent,
    downloads: ureq::Agent,
    base_url: String,
    credentials: Credentials,
}

/// Why a download gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadError {
    /// The link is spent or expired (`404 ARTIFACT_NOT_FOUND`), or refused.
    Refused(String),
    /// The hub could not be reached or the transfer broke.
    Failed(String),
}

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownloadError::Refused(m) | DownloadError::Failed(m) => f.write_str(m),
        }
    }
}

/// Longest a whole artifact download may take (the link is valid for ten
/// minutes from the worker's upload; a transfer that started may finish).
const DOWNLOAD_TIME_LIMIT: Duration = Duration::from_secs(30 * 60);

impl HubClient {
    /// `timeout` (HUB_TIMEOUT_SECS) bounds connecting, each write of the
    /// body, and the wait for the hub's answer: a hub that hangs is cut off
    /// after it, while a large tarball that keeps flowing is not.
    pub fn new(base_url: &str, credentials: Credentials, timeout: Duration) -> HubClient {
        let builder = || {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
                .timeout_per_write(Some(timeout))
                .timeout_recv_response(Some(timeout))
                .user_agent(concat!("hone-build/", env!("CARGO_PKG_VERSION")))
        };
        HubClient {
            agent: builder()
                .timeout_recv_body(Some(timeout))
                .build()
                .new_agent(),
            downloads: builder()
                .timeout_recv_body(Some(DOWNLOAD_TIME_LIMIT))
                .build()
                .new_agent(),
            base_url: base_url.trim_end_matches('/').to_string(),
            credentials,
        }
    }

    /// Opens an artifact download (`GET download_url`, single use): the body
    /// is the artifact, base64-encoded. Never logs the URL (its token is the
    /// secret).
    pub fn download(&self, url: &str) -> Result<impl std::io::Read + use<>, DownloadError> {
        match self.downloads.get(url).call() {
            Ok(resp) if resp.status().is_success() => Ok(resp.into_body().into_reader()),
            Ok(mut resp) => {
                let (status, text) = answer(&mut resp);
                let why = match classify(status, &text) {
                    Outcome::Accepted(_) => format!("Perry Hub answered HTTP {status}"),
                    Outcome::Retryable(m) | Outcome::Permanent(m) => m,
                };
                Err(DownloadError::Refused(format!(
                    "artifact download refused: {why}"
                )))
            }
            Err(e) => Err(DownloadError::Failed(format!(
                "artifact download failed: {}",
                describe(&e)
            ))),
        }
    }

    /// Submits one job and classifies the outcome. Never returns the
    /// license key or the callback token in a message.
    pub fn submit(&self, s: &Submission<'_>) -> Outcome {
        let file = match File::open(s.tarball) {
            Ok(f) => f,
            Err(e) => return Outcome::Permanent(format!("cannot read the uploaded tarball: {e}")),
        };
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Outcome::Permanent(format!("cannot read the uploaded tarball: {e}")),
        };
        // With an account token the license key is not sent: the hub
        // refuses an unknown token even beside a valid key.
        let token = self.credentials.token.expose();
        let mut fields = Vec::with_capacity(4);
        if token.is_empty() {
            fields.push((
                "license_key",
                self.credentials.license_key.expose().to_string(),
            ));
        }
        fields.push(("manifest", s.manifest()));
        fields.push(("credentials", "{}".to_string()));
        fields.push(("artifact_upload_url", s.callback_url.to_string()));
        let form = MultipartBody::new(&fields, "tarball_b64", file, size);
        let url = format!("{}/api/v1/build", self.base_url);
        let content_type = form.content_type();
        let len = form.len;
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", &content_type)
            .header("Content-Length", &len.to_string());
        if !token.is_empty() {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        let resp = req.send(ureq::SendBody::from_owned_reader(form));
        match resp {
            Ok(mut resp) => {
                let (status, text) = answer(&mut resp);
                classify(status, &text)
            }
            Err(e) => Outcome::Retryable(format!("Perry Hub unreachable: {}", describe(&e))),
        }
    }

    /// `GET /api/v1/status`: the hub's own status text, for check-config.
    pub fn hub_status(&self) -> Result<String, String> {
        let url = format!("{}/api/v1/status", self.base_url);
        match self.agent.get(&url).call() {
            Ok(mut r) if r.status().is_success() => Ok(answer(&mut r).1),
            Ok(r) => Err(format!("Perry Hub answered {}", r.status())),
            Err(e) => Err(format!("Perry Hub unreachable: {}", describe(&e))),
        }
    }
}

/// The status and (at most 64 KiB of) the body of the hub's answer.
fn answer(resp: &mut ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Classifies the hub's answer (docs/jobs.md): 2xx with a job id is accepted;
/// 5xx, 408 and 429 RATE_LIMITED are retryable; 400, 401, 403, 429
/// PUBLISH_LIMIT_REACHED and other 4xx are permanent.
pub fn classify(status: u16, body: &str) -> Outcome {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    if (200..300).contains(&status) {
        let id = json
            .as_ref()
            .and_then(|j| j.get("job_id"))
            .and_then(|v| v.as_str());
        return match id {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 128
                    && id.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Outcome::Accepted(id.to_string())
            }
            Some(id) => Outcome::Retryable(format!(
                "Perry Hub answered {status} with an unusable job id '{}'",
                crate::validate::printable(id)
            )),
            None => Outcome::Retryable(format!("Perry Hub answered {status} without a job id")),
        };
    }
    let err = json.as_ref().and_then(|j| j.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let message = err
        .and_then(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .or_else(|| e.as_str())
        })
        .unwrap_or("");
    // The hub's words are logged and stored: control characters escaped.
    let (code, message) = (
        crate::validate::escaped(code),
        crate::validate::escaped(message),
    );
    let text = match (code.is_empty(), message.is_empty()) {
        (false, false) => format!("Perry Hub: {code}: {message}"),
        (false, true) => format!("Perry Hub: {code} (HTTP {status})"),
        (true, false) => format!("Perry Hub: {message} (HTTP {status})"),
        (true, true) => format!("Perry Hub answered HTTP {status}"),
    };
    let text: String = text.chars().take(1000).collect();
    match status {
        403 if code == "ACCOUNT_REQUIRED" => Outcome::Permanent(format!(
            "{text} — the license key is bound to another plugin's bundle id: \
             set PERRY_HUB_TOKEN to a Perry account API token"
        )),
        429 if code == "PUBLISH_LIMIT_REACHED" => Outcome::Permanent(text),
        429 | 408 | 500..=599 => Outcome::Retryable(text),
        _ => Outcome::Permanent(text),
    }
}

/// A `multipart/form-data` body: text fields, then one file part whose
/// content is base64-encoded while it is read. Its length is known up front.
pub struct MultipartBody {
    boundary: String,
    head: Cursor<Vec<u8>>,
    file: Base64Encoder<File>,
    tail: Cursor<Vec<u8>>,
    /// Total length in bytes.
    pub len: u64,
}

impl MultipartBody {
    pub fn new(
        fields: &[(&str, String)],
        file_field: &str,
        file: File,
        file_size: u64,
    ) -> MultipartBody {
        let boundary = format!(
            "----hone-build-{}",
            codec::random_hex(12).unwrap_or_else(|_| "boundary".into())
        );
        let mut head = Vec::new();
        for (name, value) in fields {
            head.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                    .as_bytes(),
            );
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
        let b64_len = Base64Encoder::<File>::encoded_len(file_size);
        let len = head.len() as u64 + b64_len + tail.len() as u64;
        MultipartBody {
            boundary,
            head: Cursor::new(head),
            file: Base64Encoder::new(file),
            tail: Cursor::new(tail),
            len,
        }
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }
}

impl Read for MultipartBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let n = self.file.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.tail.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_the_workers_accept() {
        assert_eq!(hub_app_name("my.plugin"), "my-plugin");
        assert_eq!(hub_app_name("A_b-9"), "A_b-9");
        assert_eq!(hub_version("1.0.0-beta.1"), "1.0.0");
        assert_eq!(hub_version("2.0.0-RC"), "2.0.0");
        assert_eq!(hub_version("v2.1"), "2.1");
        assert_eq!(hub_version("1..2."), "1.2");
        assert_eq!(hub_version("beta"), "0.0.0");
        for v in ["1.0.0-beta.1", "v2.1", "x", "9.9.9_1"] {
            let h = hub_version(v);
            assert!(
                h.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{v} -> {h}"
            );
        }
    }

    #[test]
    fn account_required_names_the_token_key() {
        let body =
            r#"{"error":{"code":"ACCOUNT_REQUIRED","message":"account required","login_url":"x"}}"#;
        assert!(
            matches!(classify(403, body), Outcome::Permanent(m) if m.contains("PERRY_HUB_TOKEN"))
        );
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(200, r#"{"job_id":"abc","ws_url":"/ws","position":1}"#),
            Outcome::Accepted("abc".into())
        );
        assert!(matches!(classify(200, "{}"), Outcome::Retryable(_)));
        // What the hub says is escaped before it is logged or stored.
        let forged = r#"{"error":{"code":"X\u001b[2J","message":"a\nFORGED\r\u202e"}}"#;
        match classify(400, forged) {
            Outcome::Permanent(m) => {
                assert!(
                    !m.chars().any(|c| c.is_control() || c == '\u{202e}'),
                    "{m:?}"
                );
                assert!(m.contains("FORGED") && m.contains("\\u{1b}"), "{m:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(200, r#"{"job_id":"a\nb"}"#),
            Outcome::Retryable(m) if !m.contains('\n')
        ));
        assert!(matches!(classify(500, "oops"), Outcome::Retryable(_)));
        assert!(matches!(classify(503, ""), Outcome::Retryable(_)));
        let rl = r#"{"error":{"code":"RATE_LIMITED","message":"slow down"}}"#;
        assert!(matches!(classify(429, rl), Outcome::Retryable(m) if m.contains("slow down")));
        let pl = r#"{"error":{"code":"PUBLISH_LIMIT_REACHED","message":"limit reached"}}"#;
        assert_eq!(
            classify(429, pl),
            Outcome::Permanent("Perry Hub: PUBLISH_LIMIT_REACHED: limit reached".into())
        );
        let li = r#"{"error":{"code":"LICENSE_INVALID","message":"invalid license key"}}"#;
        assert!(
            matches!(classify(401, li), Outcome::Permanent(m) if m.contains("invalid license key"))
        );
        assert!(matches!(
            classify(
                403,
                r#"{"error":{"code":"ACCOUNT_REQUIRED","message":"x"}}"#
            ),
            Outcome::Permanent(_)
        ));
        assert!(matches!(
            classify(400, r#"{"error":{"code":"BAD_REQUEST","message":"x"}}"#),
            Outcome::Permanent(_)
        ));
    }
}
