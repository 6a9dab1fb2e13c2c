//! `perry-hub-sim`: a local stand-in for Perry Hub, for testing hone-build.
//!
//! By default it behaves as **today's real hub** does (it never calls a
//! submitter back); `--callbacks` (`"callbacks": true`) makes it a hub
//! patched to POST artifacts to `artifact_upload_url`, the protocol
//! hone-build was first designed against.
//!
//! ```text
//! perry-hub-sim [--bind 127.0.0.1] [--port 0] [--ws-port 0] [KNOBS…]   (--help lists them)
//! ```
//! On start it prints two lines to stdout,
//! `perry-hub-sim listening on http://127.0.0.1:PORT` then
//! `perry-hub-sim websocket on ws://127.0.0.1:WSPORT/ws`; logs go to stderr.
//!
//! # Real-hub mode (default)
//! - `POST /api/v1/build` (multipart): only `manifest` (required JSON
//!   object), `tarball_b64` (required), `credentials`, `license_key` count;
//!   other parts (`artifact_upload_url`) are read and dropped. Auth:
//!   `Authorization: Bearer <token>` from `accounts` (unknown: 401
//!   `AUTH_INVALID`, even with a valid key) or `license_key` (unknown: 401
//!   `LICENSE_INVALID`); neither: 400 `BAD_REQUEST`. With
//!   `device_bound_keys` a key binds to its first `bundle_id`; another is
//!   403 `ACCOUNT_REQUIRED` (+ `login_url`); tokens are never bound.
//!   `rate_limit_per_hour` → 429 `RATE_LIMITED` (accepted submissions per
//!   key/token in a sliding hour); `publish_limit_per_month` → 429
//!   `PUBLISH_LIMIT_REACHED` (+ `usage: {publishes, limit, period}`; counted
//!   successful builds). Targets: empty means `["macos"]`; one no worker has
//!   is a 400. Success: exactly `200 {"job_id":"<uuid v4>","ws_url":"/ws","position":N}`;
//!   errors `{"error":{"code","message"}}`. `fail_next`/`hang_next` work in
//!   both modes.
//! - The job waits `build_delay_ms` (queued; `queue_updates` N: meanwhile
//!   `queue_update` positions N … 1, each twice), then a worker thread plays it,
//!   pausing `stage_delay_ms` before each stage: the Linux worker's checks
//!   (`app_name` letters, digits, space, `-`, `_`, ≤ 200 chars; `bundle_id`
//!   letters, digits, `.`, `-`, `_`; `version` digits and dots; `entry` not
//!   absolute, no `..`; failing: `error` INTERNAL_ERROR naming the field,
//!   `complete(false)`); then per target `stage` (extracting, compiling,
//!   bundling, uploading, signing, complete), `progress`, `log` lines (plus
//!   `log_lines` numbered stdout lines, each after `log_line_delay_ms`, and
//!   the `extra_log_lines` as stderr lines, while compiling), the
//!   packages (see `package.rs`) with `artifact_ready`, and finally
//!   `complete(success:true, duration_secs, artifacts:[{name,size,sha256}])`.
//!   windows: a hidden `windows-precompiled` upload (never announced), then
//!   `stage signing`, then `artifact_ready` `windows`; macos/ios: a visible
//!   `*-precompiled` `artifact_ready`, `stage signing`, then `*-sign`.
//!   Artifact names `<app_name>-<job_id>.<ext>`.
//! - WebSocket (own port, any path, text frames of JSON, at most 256
//!   connections): the first client message must be
//!   `{"type":"subscribe","job_id"}` (else the socket is closed); answer
//!   `job_created` (`position` 0, `estimated_wait_secs` 0) and, for a finished
//!   job, at once `complete` (`duration_secs` 0, `artifacts` []). Unknown job:
//!   `{"type":"error","code":"JOB_NOT_FOUND","message":"Job not found"}`,
//!   then close. A second subscribe is ignored; `{"type":"cancel","job_id"}`
//!   ends a running job (`error` + `complete(false)`); pings get pongs; the
//!   hub never pings. Nothing is replayed: a message sent while nobody is
//!   subscribed is lost; every subscriber gets every message.
//! - `GET /api/v1/dl/<token>` (the `download_url` of `artifact_ready`):
//!   single use (spent before the body is sent), valid `expires_in_secs`
//!   from the upload; spent or expired: 404 `ARTIFACT_NOT_FOUND`. 200
//!   `Content-Type: text/plain`, `Content-Disposition: attachment;
//!   filename="<name>"`, body the package in standard base64 (streamed,
//!   with a Content-Length).
//! - Traps: `compile_failure`, `upload_failure` (`error` then
//!   `complete(success:true)`, no `artifact_ready`), `wrong_sha256`,
//!   `raw_program` (one `artifact_ready` per target, `target` = the hub
//!   target, the program itself), `bad_package`, `close_subscribers_after_ms`,
//!   `download_delay_ms`, `download_hang` (half the body, then nothing),
//!   `download_throttle_bytes_per_sec`, and `POST /_sim/forget` (or
//!   `"forget_jobs": true`): every job, download token and rate window is
//!   forgotten and subscriber sockets are closed, as a hub restart does.
//!
//! # Callbacks mode (`--callbacks`)
//! The old behaviour: submissions need `license_key`, `manifest`,
//! `credentials`, `tarball_b64` and an http(s) `artifact_upload_url`; after
//! `build_delay_ms` each target's deterministic artifact (`artifact.rs`, of
//! `artifact_size` bytes) is POSTed there like Perry's Linux worker would
//! (`Content-Type: text/plain`, base64 body, `x-artifact-name`,
//! `x-artifact-sha256`, `x-artifact-target`, `Authorization: Bearer <hub job
//! token>`), shaped by `never_callback`, `wrong_checksum`, `deliver_twice`,
//! `raw_body`, `throttle_bytes_per_sec`. Such jobs can be followed on the
//! WebSocket too; they only get `complete(success:true)` once delivered.
//!
//! # Other routes
//! - `GET /api/v1/status` → `{"status":"ok","queue_length","perry_version",
//!   "expected_perry_version","supported_targets","connected_workers",
//!   "service":"perry-hub-sim","queued","workers"}`.
//!
//! # Control API (HTTP port)
//! - `GET /_sim/config`, `POST /_sim/config` (JSON object, any subset of the
//!   knobs; unknown fields are a 400; answers the full config). A build uses
//!   the configuration of the moment its job was accepted (downloads: of the
//!   moment they are requested).
//! - `GET /_sim/jobs`: every job of either mode, in acceptance order:
//!   `{job_id, mode ("real"|"callbacks"), manifest, targets, state
//!   ("queued"|"running"|"succeeded"|"failed"|"cancelled"), error, identity
//!   ("license:<key>"|"token:<token>"), created_at_ms, finished_at_ms,
//!   subscribers, subscriptions, artifacts: [{target, name, size, sha256 (of
//!   the package), announced_sha256, program_path, program_sha256,
//!   program_size (null when the package holds no usable program), relayed,
//!   downloads, download_url, expires_at_ms}]}`.
//! - `POST /_sim/forget`: a hub restart (see above).
//! - `GET /_sim/submissions`: every `POST /api/v1/build`, rejected ones too.
//! - `GET /_sim/deliveries`: every callback delivery attempt and its outcome.
//! - `POST /_sim/reset`: forget submissions, deliveries, jobs, bindings and
//!   counts (pending work is dropped), restore the start configuration.
//! - `POST /_sim/deliver/<job_id>` (callbacks mode): deliver that job's
//!   artifact now, with the current configuration (even under
//!   `never_callback`); answers the delivery record (an array of records if
//!   the job has several targets).

mod artifact;
mod hub;
mod multipart;
mod package;
mod realhub;
mod state;
mod worker;
mod ws;

use hub::error_body;
use serde_json::{Map, Value, json};
use state::{Config, ConfigPatch, Sim};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use tiny_http::{Header, Method, Request, Response, Server};

/// How a knob's command-line value is read.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `--flag` alone is true; `--flag=false` too.
    Bool,
    Num,
    Str,
    /// Repeatable; each value appended (or comma-separated).
    List,
}

/// Every knob: flag, `/_sim/config` field, kind, one line of help.
const KNOBS: &[(&str, &str, Kind, &str)] = &[
    (
        "--callbacks",
        "callbacks",
        Kind::Bool,
        "patched hub: POST artifacts to artifact_upload_url (the old protocol) instead of the real hub's WebSocket + downloads",
    ),
    (
        "--license-key",
        "license_key",
        Kind::Str,
        "the valid license key (default sim-license)",
    ),
    (
        "--account",
        "accounts",
        Kind::List,
        "a valid account API token (Authorization: Bearer); repeatable or comma-separated",
    ),
    (
        "--device-bound-keys",
        "device_bound_keys",
        Kind::Bool,
        "license keys bind to their first bundle_id; another one is 403 ACCOUNT_REQUIRED",
    ),
    (
        "--rate-limit-per-hour",
        "rate_limit_per_hour",
        Kind::Num,
        "429 RATE_LIMITED past N accepted submissions per key/token in a sliding hour (0 = off)",
    ),
    (
        "--publish-limit-per-month",
        "publish_limit_per_month",
        Kind::Num,
        "429 PUBLISH_LIMIT_REACHED past N successful builds per key/token (0 = off)",
    ),
    (
        "--build-delay-ms",
        "build_delay_ms",
        Kind::Num,
        "time a job waits queued before its worker starts (callbacks: before delivery) (default 200)",
    ),
    (
        "--stage-delay-ms",
        "stage_delay_ms",
        Kind::Num,
        "pause before each stage message of a build (default 10)",
    ),
    (
        "--program-size",
        "program_size",
        Kind::Num,
        "size in bytes of the compiled program inside each package (default 4096)",
    ),
    (
        "--artifact-size",
        "artifact_size",
        Kind::Num,
        "callbacks: size in bytes of each delivered artifact (default 4096)",
    ),
    (
        "--expires-in-secs",
        "expires_in_secs",
        Kind::Num,
        "download links expire N s after the upload (default 600)",
    ),
    (
        "--close-subscribers-after-ms",
        "close_subscribers_after_ms",
        Kind::Num,
        "close each WebSocket subscriber N ms after it subscribed (0 = never)",
    ),
    (
        "--queue-updates",
        "queue_updates",
        Kind::Num,
        "while queued, queue_update positions N, N-1, … 1 evenly over --build-delay-ms, each sent twice (default 0)",
    ),
    (
        "--log-lines",
        "log_lines",
        Kind::Num,
        "N more stdout log lines while compiling, `[i/N] compiled module mI.ts` (default 0)",
    ),
    (
        "--log-line-delay-ms",
        "log_line_delay_ms",
        Kind::Num,
        "pause before each of those lines (default 0)",
    ),
    (
        "--extra-log-line",
        "extra_log_lines",
        Kind::List,
        "a stderr log line sent as it is while compiling (after the --log-lines ones); repeatable",
    ),
    (
        "--compile-failure",
        "compile_failure",
        Kind::Bool,
        "builds fail: stderr log lines (error TS2304 ...), error, complete(false)",
    ),
    (
        "--upload-failure",
        "upload_failure",
        Kind::Bool,
        "the worker's upload fails: error, then complete(success:true), no artifact_ready",
    ),
    (
        "--wrong-sha256",
        "wrong_sha256",
        Kind::Bool,
        "artifact_ready announces a wrong sha256",
    ),
    (
        "--raw-program",
        "raw_program",
        Kind::Bool,
        "patched worker: the artifact is the raw program (one stage, target = the hub target)",
    ),
    (
        "--bad-package",
        "bad_package",
        Kind::Str,
        "dotdot|absolute|symlink|no_program|zip_bomb: break the package that carries the program",
    ),
    (
        "--zip-bomb-size",
        "zip_bomb_size",
        Kind::Num,
        "bytes the zip_bomb entry expands to (whole MiB; default 1 GiB)",
    ),
    (
        "--download-delay-ms",
        "download_delay_ms",
        Kind::Num,
        "wait N ms before answering a download (the token is already spent)",
    ),
    (
        "--download-hang",
        "download_hang",
        Kind::Bool,
        "downloads send half of the body, then hang",
    ),
    (
        "--download-throttle-bytes-per-sec",
        "download_throttle_bytes_per_sec",
        Kind::Num,
        "limit download bodies to about N bytes/s (0 = off)",
    ),
    (
        "--fail-next",
        "fail_next",
        Kind::Num,
        "refuse the next N submissions (with fail_kind)",
    ),
    (
        "--fail-kind",
        "fail_kind",
        Kind::Str,
        "500|rate_limited|publish_limit|account_required|auth_invalid (default 500)",
    ),
    (
        "--hang-next",
        "hang_next",
        Kind::Num,
        "hold the next N submissions hang_ms before answering",
    ),
    (
        "--hang-ms",
        "hang_ms",
        Kind::Num,
        "how long hang_next holds a submission",
    ),
    (
        "--never-callback",
        "never_callback",
        Kind::Bool,
        "callbacks: never deliver automatically",
    ),
    (
        "--wrong-checksum",
        "wrong_checksum",
        Kind::Bool,
        "callbacks: x-artifact-sha256 is wrong",
    ),
    (
        "--deliver-twice",
        "deliver_twice",
        Kind::Bool,
        "callbacks: deliver every artifact twice",
    ),
    (
        "--raw-body",
        "raw_body",
        Kind::Bool,
        "callbacks: deliver raw bytes instead of base64",
    ),
    (
        "--throttle-bytes-per-sec",
        "throttle_bytes_per_sec",
        Kind::Num,
        "callbacks: limit deliveries to about N bytes/s (0 = off)",
    ),
];

fn usage() -> String {
    let mut u = String::from(
        "Usage: perry-hub-sim [OPTIONS]\n\n\
         A Perry Hub simulator for testing hone-build: by default today's real hub\n\
         (WebSocket, single-use base64 downloads, packages per target).\n\n\
         Options:\n\
         \x20 --bind ADDR            address to listen on (default 127.0.0.1)\n\
         \x20 --port PORT            HTTP port, 0 = any free port (default 0)\n\
         \x20 --ws-port PORT         WebSocket port, 0 = any free port (default 0)\n\
         \x20 -h, --help             print this help\n\n\
         Knobs (also fields of POST /_sim/config; there, \"forget_jobs\": true, like\n\
         POST /_sim/forget, forgets every job as a hub restart does):\n",
    );
    for (flag, _, kind, help) in KNOBS {
        let arg = match kind {
            Kind::Bool => "",
            Kind::Num => " N",
            Kind::Str | Kind::List => " VALUE",
        };
        u.push_str(&format!("  {:<42} {help}\n", format!("{flag}{arg}")));
    }
    u
}

/// Largest control-API request body read.
const MAX_CONTROL_BODY: u64 = 1024 * 1024;

struct Args {
    bind: String,
    port: u16,
    ws_port: u16,
    config: Config,
}

fn parse_args() -> Result<Args, String> {
    let mut bind = "127.0.0.1".to_string();
    let mut port = 0u16;
    let mut ws_port = 0u16;
    let mut knobs = Map::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{}", usage());
            std::process::exit(0);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let parse_port = |v: String| {
            v.parse::<u16>()
                .map_err(|_| format!("{flag}: bad port {v:?}"))
        };
        match flag.as_str() {
            "--bind" => bind = value()?,
            "--port" => port = parse_port(value()?)?,
            "--ws-port" => ws_port = parse_port(value()?)?,
            "--accounts" => {
                let v = value()?;
                let list = knobs.entry("accounts").or_insert_with(|| json!([]));
                for t in v.split(',').filter(|t| !t.is_empty()) {
                    list.as_array_mut().expect("array").push(json!(t));
                }
            }
            _ => {
                let Some(&(_, key, kind, _)) = KNOBS.iter().find(|k| k.0 == flag) else {
                    return Err(format!("unknown argument {arg:?}"));
                };
                let v = match kind {
                    Kind::Bool => match inline.as_deref() {
                        None | Some("true") => json!(true),
                        Some("false") => json!(false),
                        Some(v) => {
                            return Err(format!("{flag}: expected true or false, not {v:?}"));
                        }
                    },
                    Kind::Num => {
                        let v = value()?;
                        json!(
                            v.parse::<u64>()
                                .map_err(|_| format!("{flag}: not a number: {v:?}"))?
                        )
                    }
                    Kind::Str => json!(value()?),
                    Kind::List => {
                        let v = value()?;
                        let list = knobs.entry(key).or_insert_with(|| json!([]));
                        for t in v.split(',').filter(|t| !t.is_empty()) {
                            list.as_array_mut().expect("array").push(json!(t));
                        }
                        continue;
                    }
                };
                knobs.insert(key.to_string(), v);
            }
        }
    }
    let patch: ConfigPatch =
        serde_json::from_value(Value::Object(knobs)).map_err(|e| format!("bad option: {e}"))?;
    if patch.forget_jobs.is_some() {
        return Err("forget_jobs is not an option".into());
    }
    let mut config = Config::new("sim-license".into(), 200, 4096);
    config.apply(patch);
    Ok(Args {
        bind,
        port,
        ws_port,
        config,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perry-hub-sim: {e}\n\n{}", usage());
            std::process::exit(2);
        }
    };
    let server = match Server::http((args.bind.as_str(), args.port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "perry-hub-sim: cannot listen on {}:{}: {e}",
                args.bind, args.port
            );
            std::process::exit(1);
        }
    };
    let Some(addr) = server.server_addr().to_ip() else {
        eprintln!("perry-hub-sim: not listening on an IP address");
        std::process::exit(1);
    };
    let ws_listener = match TcpListener::bind((args.bind.as_str(), args.ws_port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "perry-hub-sim: cannot listen on {}:{} (websocket): {e}",
                args.bind, args.ws_port
            );
            std::process::exit(1);
        }
    };
    let ws_addr = match ws_listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perry-hub-sim: websocket address: {e}");
            std::process::exit(1);
        }
    };
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "perry-hub-sim listening on http://{addr}");
    let _ = writeln!(stdout, "perry-hub-sim websocket on ws://{ws_addr}/ws");
    let _ = stdout.flush();
    eprintln!(
        "perry-hub-sim: {} mode, license key {:?}, build delay {} ms, program size {} bytes",
        if args.config.callbacks {
            "callbacks"
        } else {
            "real-hub"
        },
        args.config.license_key,
        args.config.build_delay_ms,
        args.config.program_size
    );

    let sim = Arc::new(Sim::new(
        args.config,
        worker::make_agent(),
        format!("http://{addr}"),
    ));
    let ws_sim = Arc::clone(&sim);
    if let Err(e) = thread::Builder::new()
        .name("ws-accept".into())
        .spawn(move || ws::serve(ws_sim, ws_listener))
    {
        eprintln!("perry-hub-sim: cannot start the websocket server: {e}");
        std::process::exit(1);
    }
    // One thread per request: a hanging submission or a synchronous
    // delivery never blocks other requests.
    for request in server.incoming_requests() {
        let sim = Arc::clone(&sim);
        let spawned = thread::Builder::new()
            .name("request".into())
            .spawn(move || handle(&sim, request));
        if let Err(e) = spawned {
            eprintln!("perry-hub-sim: cannot start request thread: {e}");
        }
    }
}

fn header(req: &Request, name: &'static str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str().to_string())
}

fn handle(sim: &Arc<Sim>, mut req: Request) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    if method == Method::Get
        && let Some(token) = path.strip_prefix("/api/v1/dl/")
    {
        realhub::download(sim, token, req);
        return;
    }
    let (status, body) = route(sim, &method, &path, &mut req);
    // Never leave body bytes unread (tiny_http would buffer them all at once).
    let _ = io::copy(req.as_reader(), &mut io::sink());
    if !path.starts_with("/_sim/") || status >= 400 {
        eprintln!("perry-hub-sim: {method} {path} -> {status}");
    }
    let data = serde_json::to_vec(&body).unwrap_or_default();
    let content_type =
        Header::from_bytes("Content-Type", "application/json").expect("static header is valid");
    let response = Response::from_data(data)
        .with_status_code(status)
        .with_header(content_type);
    if let Err(e) = req.respond(response) {
        eprintln!("perry-hub-sim: {method} {path}: cannot send response: {e}");
    }
}

fn not_found() -> (u16, Value) {
    (404, error_body("NOT_FOUND", "no such route"))
}

fn method_not_allowed() -> (u16, Value) {
    (405, error_body("METHOD_NOT_ALLOWED", "method not allowed"))
}

fn route(sim: &Arc<Sim>, method: &Method, path: &str, req: &mut Request) -> (u16, Value) {
    let get = *method == Method::Get;
    let post = *method == Method::Post;
    match path {
        "/api/v1/build" if post => {
            let content_type = header(req, "Content-Type");
            let authorization = header(req, "Authorization");
            hub::handle_build(sim, content_type, authorization, req.as_reader())
        }
        "/api/v1/status" if get => {
            let queued = sim.queued()
                + sim
                    .lock()
                    .hub
                    .jobs
                    .values()
                    .filter(|j| !j.finished())
                    .count();
            (
                200,
                json!({"status": "ok", "service": "perry-hub-sim", "queued": sim.queued(),
                    "workers": 1, "queue_length": queued, "perry_version": "0.0.0-sim",
                    "expected_perry_version": "0.0.0-sim",
                    "supported_targets": ["macos", "ios", "android", "linux", "windows"],
                    "connected_workers": 3}),
            )
        }
        "/_sim/jobs" if get => (200, sim.lock().hub.jobs_json()),
        "/_sim/forget" if post => {
            sim.lock().hub.forget();
            eprintln!("perry-hub-sim: forgot every job (hub restart)");
            (200, json!({"forgotten": true}))
        }
        "/_sim/config" if get => (200, json!(sim.config())),
        "/_sim/config" if post => update_config(sim, req),
        "/_sim/submissions" if get => (200, json!(sim.lock().submissions)),
        "/_sim/deliveries" if get => (200, json!(sim.lock().deliveries)),
        "/_sim/reset" if post => {
            sim.reset();
            eprintln!("perry-hub-sim: reset");
            (200, json!({"reset": true}))
        }
        "/api/v1/build" | "/api/v1/status" | "/_sim/config" | "/_sim/submissions"
        | "/_sim/deliveries" | "/_sim/reset" | "/_sim/jobs" | "/_sim/forget" => {
            method_not_allowed()
        }
        _ => match path.strip_prefix("/_sim/deliver/") {
            Some(job_id) if post => deliver_job(sim, job_id),
            Some(_) => method_not_allowed(),
            None => not_found(),
        },
    }
}

fn update_config(sim: &Sim, req: &mut Request) -> (u16, Value) {
    let mut raw = Vec::new();
    if let Err(e) = req.as_reader().take(MAX_CONTROL_BODY).read_to_end(&mut raw) {
        return (
            400,
            error_body("BAD_REQUEST", &format!("cannot read body: {e}")),
        );
    }
    let patch: ConfigPatch = match serde_json::from_slice(&raw) {
        Ok(p) => p,
        Err(e) => {
            return (
                400,
                error_body("BAD_REQUEST", &format!("invalid config: {e}")),
            );
        }
    };
    let forget = patch.forget_jobs == Some(true);
    let mut s = sim.lock();
    s.config.apply(patch);
    if forget {
        s.hub.forget();
        eprintln!("perry-hub-sim: forgot every job (hub restart)");
    }
    eprintln!("perry-hub-sim: config now {:?}", s.config);
    (200, json!(s.config))
}

fn deliver_job(sim: &Sim, job_id: &str) -> (u16, Value) {
    let job = sim.lock().jobs.get(job_id).cloned();
    let Some(job) = job else {
        return (
            404,
            error_body("NOT_FOUND", &format!("no job with id {job_id:?}")),
        );
    };
    let mut records = worker::deliver_now(sim, &job);
    if records.len() == 1 {
        (200, json!(records.pop()))
    } else {
        (200, json!(records))
    }
}
