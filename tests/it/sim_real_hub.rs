//! `perry-hub-sim` in its default real-hub mode, driven end to end the way
//! a client of today's Perry Hub must: submit (the multipart form hone-build
//! sends), follow the job over the WebSocket, download once, decode, verify.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Sim, http};
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::{Cursor, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const BOUNDARY: &str = "sim-real-hub-test-boundary";

/// The form hone-build sends (`src/hub.rs`): license_key, manifest,
/// credentials, artifact_upload_url, tarball_b64.
fn form(license: Option<&str>, manifest: &Value) -> Vec<u8> {
    let tarball = STANDARD.encode(b"\x1f\x8b fake tarball of the plugin sources");
    let mut parts: Vec<(&str, String)> = Vec::new();
    if let Some(l) = license {
        parts.push(("license_key", l.to_string()));
    }
    parts.push(("manifest", manifest.to_string()));
    parts.push(("credentials", "{}".into()));
    parts.push((
        "artifact_upload_url",
        "http://127.0.0.1:9/artifact/x?token=y".into(),
    ));
    parts.push(("tarball_b64", tarball));
    let mut body = Vec::new();
    for (name, value) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn manifest(app_name: &str, bundle: &str, targets: &[&str]) -> Value {
    json!({"app_name": app_name, "bundle_id": bundle, "version": "1.0.0",
        "entry": "src/index.ts", "targets": targets, "build_type": "plugin",
        "linux_format": "tarball", "windows_distribute": "portable"})
}

fn submit(sim: &Sim, license: Option<&str>, bearer: Option<&str>, m: &Value) -> common::Resp {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", ct.as_str())];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http(
        "POST",
        &format!("{}/api/v1/build", sim.url()),
        &headers,
        Some(&form(license, m)),
    )
}

/// Submits with the default license and answers the job id.
fn submit_ok(sim: &Sim, m: &Value) -> String {
    let r = submit(sim, Some("sim-license"), None, m);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 3, "exactly job_id, ws_url, position: {v}");
    assert_eq!(v["ws_url"], "/ws");
    assert!(v["position"].as_u64().unwrap() >= 1);
    let id = v["job_id"].as_str().unwrap().to_string();
    let b = id.as_bytes();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(
        (b[8], b[13], b[14], b[18], b[23]),
        (b'-', b'-', b'4', b'-', b'-')
    );
    assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "{id}");
    id
}

fn error_code(r: &common::Resp, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    v
}

struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl Client {
    fn connect(sim: &Sim) -> Client {
        let (ws, _) = tungstenite::connect(sim.ws_url()).expect("websocket connect");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        Client { ws }
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    fn subscribe(sim: &Sim, job_id: &str) -> Client {
        let mut c = Client::connect(sim);
        c.send(json!({"type": "subscribe", "job_id": job_id}));
        c
    }

    /// The next JSON message; `Err("closed")` when the socket closed, and
    /// `Err("timeout")` after `within`.
    fn next(&mut self, within: Duration) -> Result<Value, &'static str> {
        let deadline = Instant::now() + within;
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Ok(serde_json::from_str(t.as_str()).unwrap()),
                Ok(Message::Close(_)) => return Err("closed"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Err("closed"),
            }
            if Instant::now() >= deadline {
                return Err("timeout");
            }
        }
    }

    /// Every message up to and including `complete`.
    fn until_complete(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let m = self
                .next(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("{e} before complete; got {out:#?}"));
            let done = m["type"] == "complete";
            out.push(m);
            if done {
                return out;
            }
        }
    }
}

fn types(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["type"].as_str().unwrap().to_string())
        .collect()
}

fn jobs(sim: &Sim) -> Vec<Value> {
    let r = http("GET", &format!("{}/_sim/jobs", sim.url()), &[], None);
    assert_eq!(r.status, 200);
    r.json().as_array().unwrap().clone()
}

/// Downloads once and decodes; checks the headers.
fn download(url: &str, name: &str) -> Vec<u8> {
    let r = http("GET", url, &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(
        r.header("content-disposition"),
        Some(format!("attachment; filename=\"{name}\"").as_str())
    );
    STANDARD.decode(&r.body).expect("base64 body")
}

fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn linux_tarball_build_followed_downloaded_once_and_verified() {
    let sim = Sim::start_real(&["--build-delay-ms", "300"]);
    let job = submit_ok(
        &sim,
        &manifest("my-plugin", "codes.hone.plugin.my-plugin", &["linux"]),
    );
    let mut c = Client::subscribe(&sim, &job);
    let msgs = c.until_complete();
    let t = types(&msgs);
    assert_eq!(t[0], "job_created", "{t:?}");
    assert_eq!(msgs[0]["job_id"], job.as_str());
    for kind in ["stage", "progress", "log"] {
        assert!(t.contains(&kind.to_string()), "{t:?}");
    }
    assert!(
        msgs.iter().all(|m| m["job_id"] == job.as_str()),
        "{msgs:#?}"
    );
    let ready: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["type"] == "artifact_ready")
        .collect();
    assert_eq!(ready.len(), 1, "{t:?}");
    assert_eq!(t[t.len() - 2], "stage");
    let ready = ready[0].clone();
    let complete = msgs.last().unwrap();
    assert_eq!(complete["success"], true);
    assert_eq!(ready["target"], "linux");
    let name = format!("my-plugin-{job}.tar.gz");
    assert_eq!(ready["artifact_name"], name.as_str());
    assert_eq!(ready["expires_in_secs"], 600);
    let url = ready["download_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/api/v1/dl/", sim.url())),
        "{url}"
    );
    assert_eq!(
        complete["artifacts"],
        json!([{"name": name, "size": ready["artifact_size"], "sha256": ready["sha256"]}])
    );
    let log_lines: Vec<&Value> = msgs.iter().filter(|m| m["type"] == "log").collect();
    assert!(
        log_lines
            .iter()
            .all(|l| l["stream"] == "stdout" && l["line"].is_string())
    );

    let package = download(url, &name);
    assert_eq!(sha_hex(&package), ready["sha256"].as_str().unwrap());
    assert_eq!(
        package.len() as u64,
        ready["artifact_size"].as_u64().unwrap()
    );
    // Single use: the second download is refused.
    let again = http("GET", url, &[], None);
    error_code(&again, 404, "ARTIFACT_NOT_FOUND");

    // The program is under bin/, an ELF, and what /_sim/jobs says.
    let mut tar = tar::Archive::new(GzDecoder::new(Cursor::new(&package)));
    let mut program = None;
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path_bytes().as_ref() == b"my-plugin/bin/my-plugin" {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            program = Some(v);
        }
    }
    let program = program.expect("my-plugin/bin/my-plugin in the tarball");
    assert!(program.starts_with(b"\x7fELF"));
    assert_eq!(program.len(), 4096);
    let j = jobs(&sim);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["job_id"], job.as_str());
    assert_eq!(j[0]["state"], "succeeded");
    assert_eq!(j[0]["mode"], "real");
    assert_eq!(j[0]["targets"], json!(["linux"]));
    assert_eq!(j[0]["manifest"]["app_name"], "my-plugin");
    let a = &j[0]["artifacts"][0];
    assert_eq!(a["sha256"], ready["sha256"]);
    assert_eq!(a["program_sha256"], sha_hex(&program).as_str());
    assert_eq!(a["program_size"], 4096);
    assert_eq!(a["program_path"], "my-plugin/bin/my-plugin");
    assert_eq!(a["downloads"], 1);
    // artifact_upload_url was dropped: nobody was called back.
    assert!(sim.deliveries().is_empty());
    // Nothing is replayed: a late subscriber gets job_created + complete.
    let mut late = Client::subscribe(&sim, &job);
    let m = late.until_complete();
    assert_eq!(types(&m), ["job_created", "complete"]);
    assert_eq!(m[1]["success"], true);
    assert_eq!(m[1]["artifacts"], json!([]));
    assert_eq!(m[1]["duration_secs"], 0);
}

#[test]
fn two_stage_targets_and_the_hidden_windows_intermediate() {
    let sim = Sim::start_real(&["--build-delay-ms", "300"]);
    let job = submit_ok(
        &sim,
        &manifest(
            "My App",
            "codes.hone.plugin.my-app",
            &["macos", "windows", "ios", "android"],
        ),
    );
    let mut c = Client::subscribe(&sim, &job);
    let msgs = c.until_complete();
    let seq: Vec<String> = msgs
        .iter()
        .filter(|m| {
            m["type"] == "artifact_ready" || (m["type"] == "stage" && m["stage"] == "signing")
        })
        .map(|m| match m["type"].as_str().unwrap() {
            "stage" => "signing".to_string(),
            _ => m["target"].as_str().unwrap().to_string(),
        })
        .collect();
    assert_eq!(
        seq,
        [
            "macos-precompiled",
            "signing",
            "macos-sign",
            "signing",
            "windows",
            "ios-precompiled",
            "signing",
            "ios-sign",
            "android"
        ]
    );
    let by_target = |t: &str| msgs.iter().find(|m| m["target"] == t).unwrap().clone();
    // Downloading the intermediate one does not disturb the rest.
    let mac = by_target("macos-precompiled");
    let pkg = download(
        mac["download_url"].as_str().unwrap(),
        mac["artifact_name"].as_str().unwrap(),
    );
    let mut tar = tar::Archive::new(GzDecoder::new(Cursor::new(&pkg)));
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert!(
        names.contains(&"My App.app/Contents/MacOS/my-app".to_string()),
        "{names:?}"
    );
    let win = by_target("windows");
    assert!(win["artifact_name"].as_str().unwrap().ends_with(".zip"));
    let pkg = download(
        win["download_url"].as_str().unwrap(),
        win["artifact_name"].as_str().unwrap(),
    );
    let mut zip = zip::ZipArchive::new(Cursor::new(pkg)).unwrap();
    let mut exe = Vec::new();
    zip.by_name("My App.exe")
        .unwrap()
        .read_to_end(&mut exe)
        .unwrap();
    assert!(exe.starts_with(b"MZ"));
    let apk = by_target("android");
    let pkg = download(
        apk["download_url"].as_str().unwrap(),
        apk["artifact_name"].as_str().unwrap(),
    );
    assert_eq!(sha_hex(&pkg), apk["sha256"].as_str().unwrap());
    let mut zip = zip::ZipArchive::new(Cursor::new(pkg)).unwrap();
    let mut so = Vec::new();
    zip.by_name("lib/arm64-v8a/libmy-app.so")
        .unwrap()
        .read_to_end(&mut so)
        .unwrap();
    assert!(so.starts_with(b"\x7fELF"));
    assert_eq!(msgs.last().unwrap()["success"], true);
    assert_eq!(
        msgs.last().unwrap()["artifacts"].as_array().unwrap().len(),
        6
    );
    // The sim's record: the hidden intermediate is there, not relayed; the
    // stored programs match what the packages hold.
    let j = &jobs(&sim)[0];
    let arts = j["artifacts"].as_array().unwrap();
    let hidden: Vec<&Value> = arts.iter().filter(|a| a["relayed"] == false).collect();
    assert_eq!(hidden.len(), 1);
    assert_eq!(hidden[0]["target"], "windows-precompiled");
    let rec = |t: &str| arts.iter().find(|a| a["target"] == t).unwrap().clone();
    assert_eq!(rec("windows")["program_sha256"], sha_hex(&exe).as_str());
    assert_eq!(rec("android")["program_sha256"], sha_hex(&so).as_str());
    assert_eq!(rec("macos-sign")["program_sha256"], Value::Null);
    assert_eq!(
        rec("ios-precompiled")["program_sha256"],
        rec("ios-sign")["program_sha256"]
    );
}

#[test]
fn forget_close_after_cancel_and_ping() {
    let sim = Sim::start_real(&["--build-delay-ms", "5000"]);
    let m = manifest("slow", "codes.hone.plugin.slow", &["linux"]);
    // Ping is answered; the first message must be a subscribe.
    let mut c = Client::connect(&sim);
    c.ws.send(Message::Ping(vec![1, 2, 3].into())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.ws.read() {
            Ok(Message::Pong(p)) => {
                assert_eq!(&p[..], [1, 2, 3]);
                break;
            }
            Ok(other) => panic!("expected a pong, got {other:?}"),
            Err(_) => assert!(Instant::now() < deadline, "no pong"),
        }
    }
    c.send(json!({"type": "hello"}));
    assert_eq!(c.next(Duration::from_secs(5)), Err("closed"));

    // Cancel.
    let job = submit_ok(&sim, &m);
    let mut c = Client::subscribe(&sim, &job);
    assert_eq!(
        c.next(Duration::from_secs(5)).unwrap()["type"],
        "job_created"
    );
    c.send(json!({"type": "subscribe", "job_id": job})); // ignored
    c.send(json!({"type": "cancel", "job_id": job}));
    let msgs = c.until_complete();
    assert_eq!(types(&msgs)[..], ["error", "complete"], "{msgs:#?}");
    assert_eq!(msgs[1]["success"], false);

    // close_subscribers_after_ms.
    sim.set(json!({"close_subscribers_after_ms": 150}));
    let job = submit_ok(&sim, &m);
    let started = Instant::now();
    let mut c = Client::subscribe(&sim, &job);
    assert_eq!(
        c.next(Duration::from_secs(5)).unwrap()["type"],
        "job_created"
    );
    assert_eq!(c.next(Duration::from_secs(5)), Err("closed"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(140) && took < Duration::from_secs(3),
        "{took:?}"
    );
    sim.set(json!({"close_subscribers_after_ms": 0}));

    // forget: subscribers are closed, later subscribes get JOB_NOT_FOUND.
    let mut c = Client::subscribe(&sim, &job);
    assert_eq!(
        c.next(Duration::from_secs(5)).unwrap()["type"],
        "job_created"
    );
    let r = http("POST", &format!("{}/_sim/forget", sim.url()), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(c.next(Duration::from_secs(5)), Err("closed"));
    let mut c = Client::subscribe(&sim, &job);
    assert_eq!(
        c.next(Duration::from_secs(5)).unwrap(),
        json!({"type": "error", "code": "JOB_NOT_FOUND", "message": "Job not found"})
    );
    assert_eq!(c.next(Duration::from_secs(5)), Err("closed"));
    assert!(jobs(&sim).is_empty());
}

#[test]
fn auth_device_bound_keys_tokens_and_limits() {
    let sim = Sim::start_real(&[
        "--device-bound-keys",
        "--account",
        "tok-1",
        "--build-delay-ms",
        "0",
        "--stage-delay-ms",
        "0",
    ]);
    let a = manifest("a", "codes.hone.plugin.a", &["linux"]);
    let b = manifest("b", "codes.hone.plugin.b", &["linux"]);
    submit_ok(&sim, &a);
    submit_ok(&sim, &a);
    let v = error_code(
        &submit(&sim, Some("sim-license"), None, &b),
        403,
        "ACCOUNT_REQUIRED",
    );
    assert!(
        v["error"]["login_url"]
            .as_str()
            .unwrap()
            .starts_with("http"),
        "{v}"
    );
    // A Bearer token is never bound, and is preferred to the key.
    for m in [&a, &b] {
        let r = submit(&sim, Some("sim-license"), Some("tok-1"), m);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    error_code(
        &submit(&sim, Some("sim-license"), Some("nope"), &a),
        401,
        "AUTH_INVALID",
    );
    error_code(
        &submit(&sim, Some("wrong"), None, &a),
        401,
        "LICENSE_INVALID",
    );
    error_code(&submit(&sim, None, None, &a), 400, "BAD_REQUEST");

    // Limits, per token.
    sim.set(json!({"rate_limit_per_hour": 3}));
    let r = submit(&sim, None, Some("tok-1"), &a);
    assert_eq!(r.status, 200, "{}", r.text()); // the third in this hour
    error_code(&submit(&sim, None, Some("tok-1"), &a), 429, "RATE_LIMITED");
    sim.set(json!({"rate_limit_per_hour": 0, "publish_limit_per_month": 3}));
    let deadline = Instant::now() + Duration::from_secs(20);
    while jobs(&sim).iter().any(|j| j["state"] != "succeeded") {
        assert!(Instant::now() < deadline, "builds did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = error_code(
        &submit(&sim, None, Some("tok-1"), &a),
        429,
        "PUBLISH_LIMIT_REACHED",
    );
    assert_eq!(v["error"]["usage"]["publishes"], 3);
    assert_eq!(v["error"]["usage"]["limit"], 3);
    assert_eq!(v["error"]["usage"]["period"].as_str().unwrap().len(), 7);
}

#[test]
fn worker_validation_and_compile_failure() {
    let sim = Sim::start_real(&["--build-delay-ms", "300"]);
    for (field, value) in [("app_name", "my.plugin"), ("version", "1.0.0-beta.1")] {
        let mut m = manifest("my-plugin", "codes.hone.plugin.my.plugin", &["linux"]);
        m[field] = json!(value);
        let job = submit_ok(&sim, &m);
        let msgs = Client::subscribe(&sim, &job).until_complete();
        assert_eq!(
            types(&msgs),
            ["job_created", "error", "complete"],
            "{msgs:#?}"
        );
        assert_eq!(msgs[1]["code"], "INTERNAL_ERROR");
        assert!(
            msgs[1]["message"].as_str().unwrap().contains(field),
            "{msgs:#?}"
        );
        assert_eq!(msgs[2]["success"], false);
    }
    sim.set(json!({"compile_failure": true}));
    let job = submit_ok(&sim, &manifest("ok", "codes.hone.plugin.ok", &["linux"]));
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let stderr: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["type"] == "log" && m["stream"] == "stderr")
        .collect();
    assert!(
        stderr
            .iter()
            .any(|l| l["line"].as_str().unwrap().contains("error TS2304"))
    );
    let t = types(&msgs);
    assert_eq!(t[t.len() - 2..], ["error", "complete"]);
    assert!(!t.contains(&"artifact_ready".to_string()));
    assert_eq!(msgs.last().unwrap()["success"], false);
    // An upload failure: error, then complete(success:true), no artifact.
    sim.set(json!({"compile_failure": false, "upload_failure": true}));
    let job = submit_ok(&sim, &manifest("ok", "codes.hone.plugin.ok", &["linux"]));
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let t = types(&msgs);
    assert!(
        t.contains(&"error".to_string()) && !t.contains(&"artifact_ready".to_string()),
        "{t:?}"
    );
    assert_eq!(msgs.last().unwrap()["success"], true);
    // wrong_sha256 and raw_program.
    sim.set(json!({"upload_failure": false, "wrong_sha256": true, "raw_program": true}));
    let job = submit_ok(&sim, &manifest("raw", "codes.hone.plugin.raw", &["macos"]));
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let ready: Vec<&Value> = msgs
        .iter()
        .filter(|m| m["type"] == "artifact_ready")
        .collect();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["target"], "macos");
    let bytes = download(
        ready[0]["download_url"].as_str().unwrap(),
        ready[0]["artifact_name"].as_str().unwrap(),
    );
    assert!(bytes.starts_with(b"\xcf\xfa\xed\xfe"));
    assert_ne!(sha_hex(&bytes), ready[0]["sha256"].as_str().unwrap());
    let all = jobs(&sim);
    let rec = &all.last().unwrap()["artifacts"][0];
    assert_eq!(rec["sha256"], sha_hex(&bytes).as_str());
    assert_eq!(rec["program_sha256"], sha_hex(&bytes).as_str());
}

#[test]
fn expired_and_slow_downloads() {
    let sim = Sim::start_real(&["--build-delay-ms", "300", "--expires-in-secs", "0"]);
    let job = submit_ok(&sim, &manifest("x", "codes.hone.plugin.x", &["android"]));
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let ready = msgs.iter().find(|m| m["type"] == "artifact_ready").unwrap();
    let r = http("GET", ready["download_url"].as_str().unwrap(), &[], None);
    error_code(&r, 404, "ARTIFACT_NOT_FOUND");

    sim.set(json!({"expires_in_secs": 600, "download_delay_ms": 400}));
    let job = submit_ok(&sim, &manifest("x", "codes.hone.plugin.x", &["android"]));
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let ready = msgs
        .iter()
        .find(|m| m["type"] == "artifact_ready")
        .unwrap()
        .clone();
    let url = ready["download_url"].as_str().unwrap().to_string();
    let name = ready["artifact_name"].as_str().unwrap().to_string();
    let started = Instant::now();
    let bytes = download(&url, &name);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(sha_hex(&bytes), ready["sha256"].as_str().unwrap());
}

#[test]
fn bad_packages_hanging_downloads_and_forget_jobs_knob() {
    let sim = Sim::start_real(&["--build-delay-ms", "300", "--bad-package", "zip_bomb"]);
    let job = submit_ok(
        &sim,
        &manifest("bomb", "codes.hone.plugin.bomb", &["android"]),
    );
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let ready = msgs
        .iter()
        .find(|m| m["type"] == "artifact_ready")
        .unwrap()
        .clone();
    let pkg = download(
        ready["download_url"].as_str().unwrap(),
        ready["artifact_name"].as_str().unwrap(),
    );
    assert!(pkg.len() < 2 * 1024 * 1024, "{} bytes", pkg.len());
    let zip = zip::ZipArchive::new(Cursor::new(pkg)).unwrap();
    assert_eq!(zip.len(), 1);
    let mut zip = zip;
    let f = zip.by_index(0).unwrap();
    assert_eq!(f.name_raw(), b"lib/arm64-v8a/libbomb.so");
    assert_eq!(f.size(), 1024 * 1024 * 1024);
    drop(f);
    assert_eq!(jobs(&sim)[0]["artifacts"][0]["program_sha256"], Value::Null);

    sim.set(json!({"bad_package": "dotdot"}));
    let job = submit_ok(
        &sim,
        &manifest("dots", "codes.hone.plugin.dots", &["linux"]),
    );
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let ready = msgs
        .iter()
        .find(|m| m["type"] == "artifact_ready")
        .unwrap()
        .clone();
    let pkg = download(
        ready["download_url"].as_str().unwrap(),
        ready["artifact_name"].as_str().unwrap(),
    );
    let mut tar = tar::Archive::new(GzDecoder::new(Cursor::new(&pkg)));
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    assert!(
        names.contains(&"dots/bin/../../../../dots".to_string()),
        "{names:?}"
    );

    // A hanging download: headers and part of the body, then nothing.
    sim.set(json!({"bad_package": null, "download_hang": true}));
    let job = submit_ok(
        &sim,
        &manifest("hang", "codes.hone.plugin.hang", &["android"]),
    );
    let msgs = Client::subscribe(&sim, &job).until_complete();
    let ready = msgs
        .iter()
        .find(|m| m["type"] == "artifact_ready")
        .unwrap()
        .clone();
    let url = ready["download_url"].as_str().unwrap();
    let path = &url[sim.url().len()..];
    let mut s = TcpStream::connect(("127.0.0.1", sim.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    use std::io::Write;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("the download ended: {}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break, // stalled
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.parse().unwrap())
        })
        .unwrap();
    assert!(
        !body.is_empty() && body.len() < len,
        "{} of {len}",
        body.len()
    );

    // "forget_jobs": true in /_sim/config acts like POST /_sim/forget.
    sim.set(json!({"forget_jobs": true}));
    assert!(jobs(&sim).is_empty());
    let mut c = Client::subscribe(&sim, &job);
    assert_eq!(
        c.next(Duration::from_secs(5)).unwrap()["code"],
        "JOB_NOT_FOUND"
    );
}
