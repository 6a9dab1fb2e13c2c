//! `perry-hub-sim`: a local stand-in for Perry Hub, for testing hone-build.
//!
//! It speaks the hub protocol hone-build uses (SPEC section 4) and plays the
//! hub's build worker: each accepted job is "built" after a delay into a
//! deterministic artifact (see `artifact.rs`: tests can predict its bytes)
//! that is POSTed to the job's `artifact_upload_url` exactly like Perry's
//! Linux worker does (`Content-Type: text/plain`, base64 body,
//! `x-artifact-name`, `x-artifact-sha256`, `x-artifact-target`,
//! `Authorization: Bearer <hub job token>`).
//!
//! ```text
//! perry-hub-sim [--bind 127.0.0.1] [--port 0] [--license-key sim-license]
//!               [--build-delay-ms 200] [--artifact-size 4096]
//! ```
//! On start it prints one line to stdout,
//! `perry-hub-sim listening on http://127.0.0.1:PORT`; logs go to stderr.
//!
//! # Hub API
//! - `POST /api/v1/build` (multipart: `license_key`, `manifest`,
//!   `credentials`, `tarball_b64`, `artifact_upload_url`) →
//!   `200 {"job_id","ws_url":"/ws","position"}` (position: jobs accepted and
//!   not yet delivered, this one included), or
//!   `{"error":{"code","message"}}` with 400 `BAD_REQUEST`,
//!   401 `LICENSE_INVALID`, or a simulated failure (see `fail_next`).
//! - `GET /api/v1/status` → `{"status":"ok","service":"perry-hub-sim","queued":N,"workers":1}`.
//!
//! # Control API (same port)
//! - `GET /_sim/config`, `POST /_sim/config` (JSON object, any subset of the
//!   knobs; unknown fields are a 400; answers the full config):
//!   `license_key`, `build_delay_ms`, `artifact_size`,
//!   `fail_next` + `fail_kind` (`"500"`, `"rate_limited"`, `"publish_limit"`,
//!   `"account_required"`, `"auth_invalid"`), `hang_next` + `hang_ms`,
//!   `never_callback`, `wrong_checksum`, `deliver_twice`, `raw_body`,
//!   `throttle_bytes_per_sec`.
//!   An automatic delivery uses the configuration of the moment its job was
//!   accepted.
//! - `GET /_sim/submissions`: every `POST /api/v1/build`, rejected ones too.
//! - `GET /_sim/deliveries`: every delivery attempt and its outcome.
//! - `POST /_sim/reset`: forget submissions, deliveries and jobs (pending
//!   automatic deliveries are cancelled), restore the start configuration.
//! - `POST /_sim/deliver/<job_id>`: deliver that job's artifact now, with the
//!   current configuration (even under `never_callback`); answers the
//!   delivery record (an array of records if the job has several targets).

mod artifact;
mod hub;
mod multipart;
mod state;
mod worker;

use hub::error_body;
use serde_json::{Value, json};
use state::{Config, ConfigPatch, Sim};
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::thread;
use tiny_http::{Header, Method, Request, Response, Server};

const USAGE: &str = "\
Usage: perry-hub-sim [OPTIONS]

A Perry Hub simulator for testing hone-build.

Options:
  --bind ADDR            address to listen on (default 127.0.0.1)
  --port PORT            port to listen on, 0 = any free port (default 0)
  --license-key KEY      accepted license key (default sim-license)
  --build-delay-ms N     delay before a job's artifact is delivered (default 200)
  --artifact-size N      size in bytes of each built artifact (default 4096)
  -h, --help             print this help
";

/// Largest control-API request body read.
const MAX_CONTROL_BODY: u64 = 1024 * 1024;

struct Args {
    bind: String,
    port: u16,
    config: Config,
}

fn parse_args() -> Result<Args, String> {
    let mut bind = "127.0.0.1".to_string();
    let mut port = 0u16;
    let mut config = Config::new("sim-license".into(), 200, 4096);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            print!("{USAGE}");
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
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--bind" => bind = value()?,
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| format!("--port: bad port {v:?}"))?;
            }
            "--license-key" => config.license_key = value()?,
            "--build-delay-ms" => config.build_delay_ms = number(value()?)?,
            "--artifact-size" => config.artifact_size = number(value()?)?,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Args { bind, port, config })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("perry-hub-sim: {e}\n\n{USAGE}");
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
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "perry-hub-sim listening on http://{addr}");
    let _ = stdout.flush();
    eprintln!(
        "perry-hub-sim: license key {:?}, build delay {} ms, artifact size {} bytes",
        args.config.license_key, args.config.build_delay_ms, args.config.artifact_size
    );

    let sim = Arc::new(Sim::new(args.config, worker::make_agent()));
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
        "/api/v1/status" if get => (
            200,
            json!({"status": "ok", "service": "perry-hub-sim", "queued": sim.queued(), "workers": 1}),
        ),
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
        | "/_sim/deliveries" | "/_sim/reset" => method_not_allowed(),
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
    let mut s = sim.lock();
    s.config.apply(patch);
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
