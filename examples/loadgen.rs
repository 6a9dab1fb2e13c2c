//! Load generator for hone-build (run by `scripts/bench-load.sh`).
//!
//! ```text
//! loadgen mix --base URL --sim URL [--connections 64] [--seconds 30]
//!             [--secret S] [--pid PID] [--jobs 256] [--warmup 5]
//!             [--weights 40,30,15,15]
//! loadgen stalled --base URL [--connections 500] [--seconds 10] [--pid PID]
//!                 [--content-length 1000]
//! ```
//!
//! `mix` prepares `--jobs` queued build jobs (uploads while the simulator's
//! `never_callback` is on, callback URLs taken from `/_sim/submissions`) and
//! a few completed versions, then runs one keep-alive connection per thread
//! through a weighted mix for `--seconds`: `GET /health` 40 %,
//! `GET /status/<name>/<version>` 30 %, `POST /upload` of a fresh version
//! 15 %, `POST /artifact/<id>?token=…` 15 % (the first delivery completes the
//! job, later ones repeat the same bytes). Every kind expects `200` (uploads:
//! a `queued` build); anything else is counted as an unexpected error. It
//! prints throughput, latency percentiles per kind, errors, a per-second
//! table, and hone-build's RSS series (`--pid`).
//!
//! `stalled` opens `--connections` sockets that send half a request and stall
//! (half of them half a header line, half full headers announcing
//! `--content-length` body bytes and sending 10), then probes `GET /health`
//! on fresh connections for `--seconds` and prints its latency (goal: every
//! probe within 1 s) and how many stalled connections are still open.
//!
//! Only loopback targets are accepted; every request has a client timeout,
//! and both modes stop by themselves.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
Usage:
  loadgen mix --base URL --sim URL [--connections 64] [--seconds 30] [--secret S]
              [--pid PID] [--jobs 256] [--warmup 5] [--weights 40,30,15,15]
  loadgen stalled --base URL [--connections 500] [--seconds 10] [--pid PID]
                  [--content-length 1000]

URLs are http://HOST:PORT on a loopback address. --pid is hone-build's
process id, for its memory, CPU and thread figures (read from /proc).
--weights: percentages of health, status, upload, artifact requests.";

/// Client-side timeout for connecting and for each socket read or write.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response body read.
const MAX_RESPONSE: usize = 64 << 20;
/// Latency goal of `/health` next to stalled connections.
const HEALTH_GOAL: Duration = Duration::from_secs(1);
/// Error samples printed at most.
const MAX_SAMPLES: usize = 8;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("mix") => Opts::parse(&args[1..]).and_then(|o| mix(&o)),
        Some("stalled") => Opts::parse(&args[1..]).and_then(|o| stalled(&o)),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return;
        }
        _ => Err(format!("expected a mode, mix or stalled\n\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------
// Options

struct Opts {
    values: BTreeMap<String, String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut values = BTreeMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}\n\n{USAGE}"));
            };
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (
                    key.to_string(),
                    it.next()
                        .ok_or_else(|| format!("--{key} needs a value"))?
                        .clone(),
                ),
            };
            values.insert(key, value);
        }
        Ok(Opts { values })
    }

    fn string(&self, key: &str) -> Result<String, String> {
        self.values
            .get(key)
            .cloned()
            .ok_or_else(|| format!("--{key} is required\n\n{USAGE}"))
    }

    fn number(&self, key: &str, default: u64, max: u64) -> Result<u64, String> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(format!("--{key}: expected a number up to {max}, got {v:?}")),
            },
        }
    }

    fn pid(&self) -> Result<Option<u32>, String> {
        self.values
            .get("pid")
            .map(|v| v.parse().map_err(|_| format!("--pid: bad pid {v:?}")))
            .transpose()
    }

    fn check_keys(&self, allowed: &[&str]) -> Result<(), String> {
        match self.values.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown option --{k}\n\n{USAGE}")),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client with keep-alive

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    /// The `Host` header.
    host: String,
}

impl Target {
    /// `http://HOST:PORT`, resolved; every address must be loopback.
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.is_empty() {
            return Err(format!("{url}: expected http://HOST:PORT without a path"));
        }
        let addrs: Vec<SocketAddr> = authority
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err(format!("{url}: refusing a target that is not loopback"));
        }
        Ok(Target {
            addr: addrs[0],
            host: authority.to_string(),
        })
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let s = TcpStream::connect_timeout(&self.addr, REQUEST_TIMEOUT)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        Ok(s)
    }
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s = s.trim();
        if s.len() > 200 {
            let mut end = 200;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &s[..end])
        } else {
            s.to_string()
        }
    }
}

/// One connection, reopened when the server closes it or a request fails.
struct Client {
    target: Target,
    conn: Option<BufReader<TcpStream>>,
    connects: u64,
}

impl Client {
    fn new(target: &Target) -> Client {
        Client {
            target: target.clone(),
            conn: None,
            connects: 0,
        }
    }

    fn get(&mut self, path: &str) -> Result<Response, String> {
        self.request("GET", path, &[], &[])
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut msg = Vec::with_capacity(512 + body.len());
        let _ = write!(
            msg,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            self.target.host
        );
        for (k, v) in headers {
            let _ = write!(msg, "{k}: {v}\r\n");
        }
        if method != "GET" {
            let _ = write!(msg, "Content-Length: {}\r\n", body.len());
        }
        msg.extend_from_slice(b"\r\n");
        msg.extend_from_slice(body);

        if self.conn.is_none() {
            let s = self
                .target
                .connect()
                .map_err(|e| format!("connect: {}", io_kind(&e)))?;
            self.connects += 1;
            self.conn = Some(BufReader::with_capacity(16 * 1024, s));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let result = conn
            .get_mut()
            .write_all(&msg)
            .map_err(|e| format!("send: {}", io_kind(&e)))
            .and_then(|()| read_response(conn));
        match result {
            Ok((resp, keep_alive)) => {
                if !keep_alive {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timeout".into(),
        ErrorKind::ConnectionReset => "connection reset".into(),
        ErrorKind::ConnectionRefused => "connection refused".into(),
        ErrorKind::BrokenPipe => "broken pipe".into(),
        ErrorKind::UnexpectedEof => "connection closed".into(),
        _ => e.to_string(),
    }
}

/// Reads one response; returns it and whether the connection stays open.
fn read_response(r: &mut BufReader<TcpStream>) -> Result<(Response, bool), String> {
    let err = |e: std::io::Error| format!("receive: {}", io_kind(&e));
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(err)? == 0 {
            return Err("receive: connection closed before a response".into());
        }
        let mut parts = line.split_whitespace();
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("receive: bad status line {:?}", line.trim_end()))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = version == "HTTP/1.0";
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).map_err(err)? == 0 {
                return Err("receive: connection closed in the headers".into());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let body = if chunked {
            read_chunked(r)?
        } else if let Some(n) = length {
            if n > MAX_RESPONSE {
                return Err(format!("receive: response of {n} bytes"));
            }
            let mut b = vec![0; n];
            r.read_exact(&mut b).map_err(err)?;
            b
        } else {
            close = true;
            let mut b = Vec::new();
            r.take(MAX_RESPONSE as u64)
                .read_to_end(&mut b)
                .map_err(err)?;
            b
        };
        return Ok((Response { status, body }, !close));
    }
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let err = |e: std::io::Error| format!("receive: {}", io_kind(&e));
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(err)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("receive: bad chunk size {:?}", line.trim()))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t).map_err(err)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_RESPONSE {
            return Err("receive: chunked response too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).map_err(err)?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).map_err(err)?;
    }
}

// ---------------------------------------------------------------------------
// Small helpers

/// xorshift64*: a fast per-thread generator (no quality needed).
struct Rng(u64);

impl Rng {
    fn seeded(extra: u64) -> Rng {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Rng((u64::from_le_bytes(b) ^ extra.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Value at quantile `q` of sorted microseconds, in milliseconds.
fn pct(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Fields of /proc/<pid>/status, in kB (or a count for `Threads`).
fn proc_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User + system CPU seconds of a process (`self` or a pid), from
/// /proc/<pid>/stat (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_secs(pid: impl std::fmt::Display) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line; after the name, state is field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// hone-build's VmRSS (kB) and thread count, once a second, until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Vec<(f64, u64, u64)>>>,
}

impl Sampler {
    fn start(pid: Option<u32>, t0: Instant) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = pid.map(|pid| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut series = Vec::new();
                let mut next = t0;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= next {
                        let rss = proc_field(pid, "VmRSS").unwrap_or(0);
                        let threads = proc_field(pid, "Threads").unwrap_or(0);
                        series.push(((now - t0).as_secs_f64(), rss, threads));
                        next += Duration::from_secs(1);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                series
            })
        });
        Sampler { stop, handle }
    }

    fn finish(mut self) -> Vec<(f64, u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// mix

const KINDS: [&str; 4] = ["health", "status", "upload", "artifact"];
/// Default shares of KINDS, in percent.
const WEIGHTS: &str = "40,30,15,15";

/// `--weights a,b,c,d` as cumulative thresholds out of their sum.
fn parse_weights(text: &str) -> Result<[usize; 4], String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("--weights: expected four numbers, got {text:?}"))?;
    if parts.len() != 4 || parts.iter().sum::<usize>() == 0 || parts.iter().any(|&p| p > 1000) {
        return Err(format!(
            "--weights: expected four numbers (health,status,upload,artifact), got {text:?}"
        ));
    }
    let mut cumulative = [0; 4];
    let mut total = 0;
    for (c, p) in cumulative.iter_mut().zip(&parts) {
        total += p;
        *c = total;
    }
    Ok(cumulative)
}

/// A queued job whose artifact the mix delivers.
struct Job {
    version: String,
    /// `/artifact/<id>?token=…`
    path: String,
    body: Vec<u8>,
    sha256: String,
    delivered: AtomicBool,
}

struct Plan {
    /// Cumulative shares of KINDS.
    weights: [usize; 4],
    name: String,
    secret: String,
    tarball: Vec<u8>,
    jobs: Vec<Job>,
    status_paths: Vec<String>,
}

/// One finished request: end time since the start (ms), latency (µs), ok.
#[derive(Clone, Copy)]
struct Sample {
    t_ms: u32,
    us: u32,
    ok: bool,
}

#[derive(Default)]
struct Tally {
    samples: [Vec<Sample>; 4],
    errors: BTreeMap<(usize, String), u64>,
    examples: Vec<String>,
    connects: u64,
}

/// A small plugin "tarball": gzip magic and random bytes (hone-build checks
/// only the magic; the simulator does not unpack it).
fn fake_tarball(size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size];
    Rng::seeded(7).fill(&mut b);
    b[..4].copy_from_slice(&[0x1f, 0x8b, 0x08, 0x00]);
    b
}

/// The deterministic 4 KiB artifact of a version: base64 text and the
/// SHA-256 of the decoded bytes.
fn artifact_for(version: &str) -> (Vec<u8>, String) {
    let mut seed = Sha256::digest(version.as_bytes()).to_vec();
    let mut raw = Vec::with_capacity(4096);
    while raw.len() < 4096 {
        seed = Sha256::digest(&seed).to_vec();
        raw.extend_from_slice(&seed);
    }
    raw.truncate(4096);
    let sha = hex(&Sha256::digest(&raw));
    let text = base64::engine::general_purpose::STANDARD.encode(&raw);
    (text.into_bytes(), sha)
}

fn upload(
    c: &mut Client,
    name: &str,
    version: &str,
    secret: &str,
    tarball: &[u8],
) -> Result<Response, String> {
    let auth = format!("Bearer {secret}");
    let mut headers = vec![("Content-Type", "application/gzip")];
    if !secret.is_empty() {
        headers.push(("Authorization", auth.as_str()));
    }
    c.request(
        "POST",
        &format!("/upload?name={name}&version={version}&platforms=linux"),
        &headers,
        tarball,
    )
}

/// `None` when the upload answered 200 with a queued build, else why not.
fn upload_problem(resp: &Response) -> Option<String> {
    if resp.status != 200 {
        return Some(resp.status.to_string());
    }
    let v = resp.json()?;
    let build = v["builds"].get(0)?;
    match build["status"].as_str() {
        Some("queued") => None,
        other => Some(format!("200 but build {}", other.unwrap_or("?"))),
    }
}

fn deliver(c: &mut Client, name: &str, job: &Job) -> Result<Response, String> {
    let artifact_name = format!("{name}-{}-linux.bin", job.version);
    c.request(
        "POST",
        &job.path,
        &[
            ("Content-Type", "text/plain"),
            ("x-artifact-sha256", &job.sha256),
            ("x-artifact-name", &artifact_name),
            ("x-artifact-target", "linux"),
            ("Authorization", "Bearer loadgen-hub-token"),
        ],
        &job.body,
    )
}

fn sim_get(sim: &Target, path: &str) -> Result<Value, String> {
    let resp = Client::new(sim).get(path)?;
    if resp.status != 200 {
        return Err(format!(
            "simulator {path}: {} {}",
            resp.status,
            resp.snippet()
        ));
    }
    resp.json()
        .ok_or_else(|| format!("simulator {path}: not JSON"))
}

fn sim_config(sim: &Target, patch: &str) -> Result<(), String> {
    let resp = Client::new(sim).request(
        "POST",
        "/_sim/config",
        &[("Content-Type", "application/json")],
        patch.as_bytes(),
    )?;
    if resp.status != 200 {
        return Err(format!(
            "simulator config: {} {}",
            resp.status,
            resp.snippet()
        ));
    }
    Ok(())
}

/// Uploads `versions` (8 at a time); each must answer 200. Returns how many
/// answered 200 with a build that is not `queued` (yet), with a sample.
fn upload_all(
    base: &Target,
    plan: &Plan,
    versions: &[String],
) -> Result<(usize, Option<String>), String> {
    let failures = Mutex::new(Vec::new());
    let not_queued = Mutex::new(Vec::new());
    thread::scope(|s| {
        for part in versions.chunks(versions.len().div_ceil(8).max(1)) {
            let (failures, not_queued) = (&failures, &not_queued);
            s.spawn(move || {
                let mut c = Client::new(base);
                for v in part {
                    match upload(&mut c, &plan.name, v, &plan.secret, &plan.tarball) {
                        Ok(resp) if resp.status == 200 => {
                            if let Some(p) = upload_problem(&resp) {
                                let note = format!("upload {v}: {p}: {}", resp.snippet());
                                not_queued.lock().unwrap().push(note);
                            }
                        }
                        Ok(resp) => failures.lock().unwrap().push(format!(
                            "upload {v}: {} {}",
                            resp.status,
                            resp.snippet()
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("upload {v}: {e}")),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if let Some(f) = failures.first() {
        return Err(format!("{} upload(s) failed, first: {f}", failures.len()));
    }
    let not_queued = not_queued.into_inner().unwrap();
    Ok((not_queued.len(), not_queued.into_iter().next()))
}

/// Callback paths (`/artifact/<id>?token=…`) by version for plugin `name`,
/// from the simulator's record of accepted submissions.
fn callback_paths(sim: &Target, name: &str) -> Result<BTreeMap<String, String>, String> {
    let subs = sim_get(sim, "/_sim/submissions")?;
    let mut urls = BTreeMap::new();
    for s in subs.as_array().into_iter().flatten() {
        let manifest = match &s["manifest"] {
            Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            v => v.clone(),
        };
        if s["status"] != 200 || manifest["app_name"] != name {
            continue;
        }
        if let (Some(v), Some(url)) = (
            manifest["version"].as_str(),
            s["artifact_upload_url"].as_str(),
        ) && let Some(i) = url.find("/artifact/")
        {
            urls.insert(v.to_string(), url[i..].to_string());
        }
    }
    Ok(urls)
}

/// Queued jobs and completed versions for the mix.
fn prepare(base: &Target, sim: &Target, secret: &str, jobs: usize) -> Result<Plan, String> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = format!("loadgen-{stamp}-{:04x}", Rng::seeded(1).next() & 0xffff);
    let mut plan = Plan {
        weights: parse_weights(WEIGHTS)?,
        name,
        secret: secret.to_string(),
        tarball: fake_tarball(2048),
        jobs: Vec::new(),
        status_paths: Vec::new(),
    };
    sim_config(sim, r#"{"never_callback":true}"#)?;

    const DONE: usize = 4;
    let queued: Vec<String> = (0..jobs).map(|i| format!("prep.{i}")).collect();
    let done: Vec<String> = (0..DONE).map(|i| format!("done.{i}")).collect();
    let all: Vec<String> = queued.iter().chain(&done).cloned().collect();
    let (not_queued, sample) = upload_all(base, &plan, &all)?;
    if let Some(sample) = sample {
        println!(
            "prepare: {not_queued} of {} uploads answered 200 without a queued build; first: {sample}",
            all.len()
        );
    }

    // Callback URLs, by version; jobs the background dispatcher submits
    // instead of the upload show up a moment later.
    let wait_until = Instant::now() + Duration::from_secs(15);
    let urls = loop {
        let urls = callback_paths(sim, &plan.name)?;
        let missing = all.iter().filter(|v| !urls.contains_key(*v)).count();
        if missing == 0 {
            break urls;
        }
        if Instant::now() > wait_until {
            return Err(format!(
                "{missing} version(s) never reached the simulator (/_sim/submissions)"
            ));
        }
        thread::sleep(Duration::from_millis(200));
    };
    let job_for = |version: &String| -> Result<Job, String> {
        let path = urls
            .get(version)
            .ok_or_else(|| format!("no callback URL for {version} in /_sim/submissions"))?;
        let (body, sha256) = artifact_for(version);
        Ok(Job {
            version: version.clone(),
            path: path.clone(),
            body,
            sha256,
            delivered: AtomicBool::new(false),
        })
    };

    // Complete the `done` versions.
    let mut c = Client::new(base);
    for v in &done {
        let job = job_for(v)?;
        let r = deliver(&mut c, &plan.name, &job)?;
        if r.status != 200 {
            return Err(format!("artifact for {v}: {} {}", r.status, r.snippet()));
        }
        let st = c.get(&format!("/status/{}/{v}", plan.name))?;
        let overall = st.json().map(|j| j["overall"].clone());
        if st.status != 200 || overall != Some(Value::from("completed")) {
            return Err(format!(
                "status of {v} after delivery: {} {}",
                st.status,
                st.snippet()
            ));
        }
        plan.status_paths.push(format!("/status/{}/{v}", plan.name));
    }
    for v in queued.iter().take(DONE) {
        plan.status_paths.push(format!("/status/{}/{v}", plan.name));
    }
    plan.jobs = queued.iter().map(job_for).collect::<Result<_, _>>()?;
    Ok(plan)
}

fn mix_worker(idx: usize, base: &Target, plan: &Plan, t0: Instant, deadline: Instant) -> Tally {
    let total = plan.weights[3];
    let mut rng = Rng::seeded(idx as u64 + 100);
    let mut c = Client::new(base);
    let mut tally = Tally::default();
    let mut uploads = 0u64;
    while Instant::now() < deadline {
        let roll = rng.below(total);
        let kind = plan.weights.iter().position(|&w| roll < w).unwrap_or(0);
        let start = Instant::now();
        let (result, job) = match kind {
            0 => (c.get("/health"), None),
            1 => {
                let p = &plan.status_paths[rng.below(plan.status_paths.len())];
                (c.get(p), None)
            }
            2 => {
                uploads += 1;
                let v = format!("m{idx}.{uploads}");
                (
                    upload(&mut c, &plan.name, &v, &plan.secret, &plan.tarball),
                    None,
                )
            }
            _ => {
                let job = &plan.jobs[rng.below(plan.jobs.len())];
                (deliver(&mut c, &plan.name, job), Some(job))
            }
        };
        let end = Instant::now();
        let problem = match &result {
            Ok(r) if kind == 2 => upload_problem(r),
            Ok(r) if r.status == 200 => None,
            Ok(r) => Some(r.status.to_string()),
            Err(e) => Some(e.clone()),
        };
        if let (None, Some(job)) = (&problem, job) {
            job.delivered.store(true, Ordering::Relaxed);
        }
        tally.samples[kind].push(Sample {
            t_ms: (end - t0).as_millis() as u32,
            us: (end - start).as_micros().min(u32::MAX as u128) as u32,
            ok: problem.is_none(),
        });
        if let Some(p) = problem {
            if tally.examples.len() < MAX_SAMPLES {
                let detail = match &result {
                    Ok(r) => r.snippet(),
                    Err(_) => String::new(),
                };
                tally.examples.push(format!(
                    "t={:.1}s {} {p} after {:.0} ms {detail}",
                    (end - t0).as_secs_f64(),
                    KINDS[kind],
                    ms(end - start)
                ));
            }
            *tally.errors.entry((kind, p)).or_default() += 1;
        }
    }
    tally.connects = c.connects;
    tally
}

fn mix(o: &Opts) -> Result<(), String> {
    o.check_keys(&[
        "base",
        "sim",
        "connections",
        "seconds",
        "secret",
        "pid",
        "jobs",
        "warmup",
        "weights",
    ])?;
    let base = Target::parse(&o.string("base")?)?;
    let sim = Target::parse(&o.string("sim")?)?;
    let connections = o.number("connections", 64, 1024)?.max(1) as usize;
    let seconds = o.number("seconds", 30, 600)?.max(1);
    let jobs = o.number("jobs", 256, 10_000)?.max(1) as usize;
    let warmup = o.number("warmup", 5, 600)?.min(seconds - 1);
    let secret = o.values.get("secret").cloned().unwrap_or_default();
    let pid = o.pid()?;
    let weights_text = o
        .values
        .get("weights")
        .cloned()
        .unwrap_or_else(|| WEIGHTS.to_string());
    let weights = parse_weights(&weights_text)?;

    let prep_start = Instant::now();
    let mut plan = prepare(&base, &sim, &secret, jobs)?;
    plan.weights = weights;
    println!(
        "loadgen mix: hone-build http://{}{}, plugin {}",
        base.host,
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        plan.name
    );
    println!(
        "prepared {} queued jobs and {} completed versions in {:.1} s; RSS now {}",
        plan.jobs.len(),
        plan.status_paths.len() / 2,
        prep_start.elapsed().as_secs_f64(),
        pid.and_then(|p| proc_field(p, "VmRSS"))
            .map(|kb| format!("{:.1} MiB", mib(kb)))
            .unwrap_or_else(|| "?".into())
    );
    println!(
        "running {connections} keep-alive connections for {seconds} s, shares of health,status,upload,artifact: {weights_text}"
    );

    let cpu_before = (pid.and_then(cpu_secs), cpu_secs("self"));
    let load_before = loadavg();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    let sampler = Sampler::start(pid, t0);
    let tallies: Vec<Tally> = thread::scope(|s| {
        let handles: Vec<_> = (0..connections)
            .map(|i| {
                let (base, plan) = (&base, &plan);
                s.spawn(move || mix_worker(i, base, plan, t0, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = t0.elapsed();
    let series = sampler.finish();
    let cpu_after = (pid.and_then(cpu_secs), cpu_secs("self"));
    let load_after = loadavg();
    let hwm = pid.and_then(|p| proc_field(p, "VmHWM"));

    // Consistency: every job with a successful delivery reads `completed`.
    let mut c = Client::new(&base);
    let (mut checked, mut not_completed) = (0, Vec::new());
    for job in plan
        .jobs
        .iter()
        .filter(|j| j.delivered.load(Ordering::Relaxed))
    {
        checked += 1;
        let overall = c
            .get(&format!("/status/{}/{}", plan.name, job.version))
            .ok()
            .and_then(|r| r.json())
            .map(|j| j["overall"].to_string());
        if overall.as_deref() != Some("\"completed\"") {
            not_completed.push(format!("{} {:?}", job.version, overall));
        }
    }
    let _ = sim_config(&sim, r#"{"never_callback":false}"#);

    report_mix(&tallies, elapsed, &series, hwm, warmup);
    let share = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) => format!(
            "{:.1} s ({:.0} % of one core)",
            a - b,
            (a - b) / elapsed.as_secs_f64() * 100.0
        ),
        _ => "?".into(),
    };
    println!(
        "CPU during the run: hone-build {}, loadgen {}; load average {load_before} before, {load_after} after ({} cores)",
        share(cpu_before.0, cpu_after.0),
        share(cpu_before.1, cpu_after.1),
        thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "consistency: {checked} delivered jobs checked with /status, {} not completed{}",
        not_completed.len(),
        not_completed
            .first()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default()
    );
    Ok(())
}

fn report_mix(
    tallies: &[Tally],
    elapsed: Duration,
    series: &[(f64, u64, u64)],
    hwm: Option<u64>,
    warmup: u64,
) {
    let secs = elapsed.as_secs_f64();
    let mut per_kind: [Vec<Sample>; 4] = Default::default();
    let mut errors: BTreeMap<(usize, String), u64> = BTreeMap::new();
    let mut examples = Vec::new();
    for t in tallies {
        for (all, mine) in per_kind.iter_mut().zip(&t.samples) {
            all.extend_from_slice(mine);
        }
        for (key, n) in &t.errors {
            *errors.entry(key.clone()).or_default() += n;
        }
        examples.extend(t.examples.iter().cloned());
    }
    let connects: u64 = tallies.iter().map(|t| t.connects).sum();
    let all: Vec<Sample> = per_kind.iter().flatten().copied().collect();
    let total = all.len();
    let failed = all.iter().filter(|s| !s.ok).count();

    println!();
    println!(
        "requests: {total} in {secs:.1} s = {:.0} req/s; unexpected: {failed}; TCP connections opened: {connects}",
        total as f64 / secs
    );
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "kind", "count", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );
    let row = |label: &str, samples: &[Sample]| {
        let mut us: Vec<u32> = samples.iter().map(|s| s.us).collect();
        us.sort_unstable();
        println!(
            "{:<9} {:>8} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>9.1} {:>7}",
            label,
            us.len(),
            us.len() as f64 / secs,
            pct(&us, 0.50),
            pct(&us, 0.90),
            pct(&us, 0.99),
            pct(&us, 1.0),
            samples.iter().filter(|s| !s.ok).count()
        );
    };
    for (k, samples) in per_kind.iter().enumerate() {
        row(KINDS[k], samples);
    }
    row("all", &all);

    if errors.is_empty() {
        println!("unexpected errors: none");
    } else {
        println!("unexpected errors (kind, status or transport error: count):");
        for ((k, what), n) in &errors {
            println!("  {:<9} {what}: {n}", KINDS[*k]);
        }
        println!("samples:");
        for e in examples.iter().take(MAX_SAMPLES) {
            println!("  {e}");
        }
    }

    // Per second: requests, errors, slowest request, RSS, threads.
    let n_secs = secs.ceil() as usize;
    let mut count = vec![0u64; n_secs + 1];
    let mut errs = vec![0u64; n_secs + 1];
    let mut slowest = vec![0u32; n_secs + 1];
    for s in &all {
        let i = (s.t_ms / 1000) as usize;
        let i = i.min(n_secs);
        count[i] += 1;
        errs[i] += u64::from(!s.ok);
        slowest[i] = slowest[i].max(s.us);
    }
    println!("per second (requests completed in that second; RSS/threads sampled at its start):");
    println!(
        "  {:>4} {:>7} {:>6} {:>9} {:>9} {:>8}",
        "s", "req", "errors", "max ms", "RSS MiB", "threads"
    );
    for i in 0..n_secs {
        if count[i] == 0 && i >= secs as usize {
            continue;
        }
        let (rss, threads) = series
            .iter()
            .find(|(t, _, _)| *t as usize == i)
            .map(|(_, r, th)| (format!("{:.1}", mib(*r)), th.to_string()))
            .unwrap_or_else(|| ("-".into(), "-".into()));
        println!(
            "  {:>4} {:>7} {:>6} {:>9.1} {:>9} {:>8}",
            i,
            count[i],
            errs[i],
            slowest[i] as f64 / 1000.0,
            rss,
            threads
        );
    }

    if series.is_empty() {
        println!("RSS: not sampled (no --pid)");
        return;
    }
    let rss: Vec<u64> = series.iter().map(|s| s.1).collect();
    let first = rss[0];
    let last = *rss.last().unwrap_or(&0);
    let warm = series
        .iter()
        .find(|s| s.0 >= warmup as f64 - 0.05)
        .map(|s| s.1)
        .unwrap_or(first);
    let min = rss.iter().copied().min().unwrap_or(0);
    let max = rss.iter().copied().max().unwrap_or(0);
    let growth = if warm > 0 {
        (last as f64 / warm as f64 - 1.0) * 100.0
    } else {
        0.0
    };
    let flat = (last as f64) <= warm as f64 * 1.2 && (last as f64) >= warm as f64 * 0.8;
    println!(
        "RSS (VmRSS, {} samples): first {:.1} MiB, after {warmup} s warm-up {:.1} MiB, last {:.1} MiB ({growth:+.1} %), min {:.1}, max {:.1} -> {}",
        rss.len(),
        mib(first),
        mib(warm),
        mib(last),
        mib(min),
        mib(max),
        if flat {
            "flat (last within 20 % of the warm-up value)"
        } else {
            "NOT flat (last differs from the warm-up value by more than 20 %)"
        }
    );
    let max_threads = series.iter().map(|s| s.2).max().unwrap_or(0);
    println!(
        "peak RSS (VmHWM) at the end: {}; threads: max {max_threads}",
        hwm.map(|k| format!("{:.1} MiB", mib(k)))
            .unwrap_or_else(|| "?".into())
    );
}

// ---------------------------------------------------------------------------
// stalled

fn stalled(o: &Opts) -> Result<(), String> {
    o.check_keys(&["base", "connections", "seconds", "pid", "content-length"])?;
    let base = Target::parse(&o.string("base")?)?;
    let n = o.number("connections", 500, 5000)? as usize;
    let seconds = o.number("seconds", 10, 600)?.max(1);
    let declared = o.number("content-length", 1000, 1 << 30)?.max(11);
    let pid = o.pid()?;

    let threads_before = pid.and_then(|p| proc_field(p, "Threads"));
    println!(
        "loadgen stalled: hone-build http://{}{}: {n} connections that stall ({} with half a header line, {} with full headers, Content-Length {declared} and 10 body bytes)",
        base.host,
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        n / 2,
        n - n / 2
    );
    let half_header = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen-st",
        base.host
    );
    let full_headers = format!(
        "POST /upload?name=stalled&version=1.0.0&platforms=linux HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/gzip\r\nContent-Length: {declared}\r\n\r\n",
        base.host
    );
    let mut body10 = vec![0x1f, 0x8b];
    body10.extend_from_slice(&[0u8; 8]);

    let open_start = Instant::now();
    let mut socks: Vec<TcpStream> = Vec::with_capacity(n);
    let mut open_errors: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..n {
        let sent = base.connect().and_then(|mut s| {
            if i % 2 == 0 {
                s.write_all(half_header.as_bytes())?;
            } else {
                s.write_all(full_headers.as_bytes())?;
                s.write_all(&body10)?;
            }
            Ok(s)
        });
        match sent {
            Ok(s) => socks.push(s),
            Err(e) => *open_errors.entry(io_kind(&e)).or_default() += 1,
        }
    }
    println!(
        "opened {} stalled connections in {:.2} s{}",
        socks.len(),
        open_start.elapsed().as_secs_f64(),
        if open_errors.is_empty() {
            String::new()
        } else {
            format!(" (failed: {open_errors:?})")
        }
    );
    // Give the server a moment to take them all in.
    thread::sleep(Duration::from_millis(300));
    if let Some(p) = pid {
        println!(
            "hone-build now: {} threads (before: {}), {} open fds, RSS {:.1} MiB",
            proc_field(p, "Threads").unwrap_or(0),
            threads_before.unwrap_or(0),
            open_fds(p).unwrap_or(0),
            mib(proc_field(p, "VmRSS").unwrap_or(0))
        );
    }

    // Probe /health on fresh connections, as a load balancer would.
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    let sampler = Sampler::start(pid, t0);
    let mut lat: Vec<u32> = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut slow = Vec::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        let r = Client::new(&base).get("/health");
        let took = start.elapsed();
        lat.push(took.as_micros().min(u32::MAX as u128) as u32);
        match r {
            Ok(resp) if resp.status == 200 => {}
            Ok(resp) => *errors.entry(resp.status.to_string()).or_default() += 1,
            Err(e) => *errors.entry(e).or_default() += 1,
        }
        if took > HEALTH_GOAL && slow.len() < MAX_SAMPLES {
            slow.push(format!(
                "t={:.1}s {:.0} ms",
                (start - t0).as_secs_f64(),
                ms(took)
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    let series = sampler.finish();
    lat.sort_unstable();
    let over = lat
        .iter()
        .filter(|&&us| us > HEALTH_GOAL.as_micros() as u32)
        .count();
    println!(
        "/health on fresh connections during {seconds} s: {} probes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; over 1 s: {over}; errors: {}",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        if errors.is_empty() {
            "none".to_string()
        } else {
            format!("{errors:?}")
        }
    );
    if !slow.is_empty() {
        println!("  slow probes: {}", slow.join(", "));
    }
    println!(
        "goal (every /health within 1 s): {}",
        if over == 0 && errors.is_empty() {
            "met"
        } else {
            "MISSED"
        }
    );
    if let Some(max_threads) = series.iter().map(|s| s.2).max() {
        println!(
            "hone-build during the probes: threads max {max_threads}, RSS max {:.1} MiB",
            mib(series.iter().map(|s| s.1).max().unwrap_or(0))
        );
    }

    // Which stalled connections did the server close or answer?
    let (mut open, mut closed) = (0usize, 0usize);
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    for s in &socks {
        let _ = s.set_nonblocking(true);
        let mut buf = [0u8; 256];
        match (&*s).read(&mut buf) {
            Ok(0) => closed += 1,
            Ok(k) => {
                let text = String::from_utf8_lossy(&buf[..k]);
                let status = text.lines().next().unwrap_or("").trim().to_string();
                *answered.entry(status).or_default() += 1;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => open += 1,
            Err(_) => closed += 1,
        }
    }
    println!(
        "stalled connections after {:.1} s: {open} still open, {closed} closed by the server without an answer, {} answered{}",
        open_start.elapsed().as_secs_f64(),
        answered.values().sum::<u64>(),
        if answered.is_empty() {
            String::new()
        } else {
            format!(" {answered:?}")
        }
    );
    drop(socks);
    Ok(())
}
