//! The HTTP server: a listening socket whose accepted connections inherit
//! read/write timeouts, tiny_http's accept loop, and two fixed pools of
//! worker threads fed over bounded channels:
//!
//! - the *body* lane (WORKERS threads) takes requests that carry a body
//!   (uploads, artifacts), which may take long to read;
//! - the *light* lane takes everything else (`/health`, `/status`,
//!   `/metrics`), so slow uploads can never starve health checks.
//!
//! A streamed reply ([`Reply::stream`]: a log being followed) is handed
//! over to the connection's own thread, which pulls its body piece by piece
//! and writes it (tiny_http HONE-PATCH 20): the worker is free at once. At
//! most LOG_FOLLOWERS_MAX are written at once ([`Streams`]); each ends when
//! its source ends, when the service stops, or when the client does not take
//! a piece within the write timeout; its access line is written then.
//!
//! A full lane answers `503` with `Retry-After` at once, from the accept
//! loop (a small write; the connection is closed, its body never drained).
//! An error answer to a request with a body closes the connection too, so
//! no thread ever waits for the rest of a body nobody will read.

use super::request::{BodySource, Reply};
use super::router::{self, Route};
use crate::app::App;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Binds the listening socket with `SO_RCVTIMEO`/`SO_SNDTIMEO` and
/// `TCP_NODELAY` set, which every accepted connection inherits on Linux
/// (tiny_http has no such settings of its own).
pub fn bind(addr: SocketAddr, io_timeout: Duration) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_read_timeout(Some(io_timeout))?;
    sock.set_write_timeout(Some(io_timeout))?;
    // tiny_http writes a response's head and body separately: without
    // TCP_NODELAY (inherited by accepted sockets on Linux) the body waits
    // for the client's delayed ACK, about 40 ms per response over ~1 KB.
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

/// The streamed replies being written, at most `max` at once.
pub(super) struct Streams {
    active: AtomicUsize,
    max: usize,
    /// Set when the service stops: sources end.
    stop: Arc<AtomicBool>,
}

impl Streams {
    fn new(max: usize, stop: Arc<AtomicBool>) -> Arc<Streams> {
        Arc::new(Streams {
            active: AtomicUsize::new(0),
            max,
            stop,
        })
    }

    /// A slot for one more streamed reply, unless `max` are being written.
    fn acquire(self: &Arc<Self>) -> Option<StreamSlot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(self)))
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

/// One streamed reply's place among [`Streams`], given back when dropped.
struct StreamSlot(Arc<Streams>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the access line of a request says, but its bytes and duration.
struct AccessLine {
    client: String,
    method: String,
    target: String,
    route: &'static str,
    status: u16,
    start: Instant,
}

impl AccessLine {
    fn of(
        app: &App,
        req: &tiny_http::Request,
        route: &'static str,
        status: u16,
        start: Instant,
    ) -> AccessLine {
        let client = req
            .remote_addr()
            .map_or_else(|| "-".to_string(), |a| a.ip().to_string());
        let method = router::log_safe(req.method().as_str());
        let url = router::origin_form(req.url()).into_owned();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let target = router::loggable_target(path, query, &app.cfg.secrets());
        AccessLine {
            client,
            method,
            target,
            route,
            status,
            start,
        }
    }

    /// Writes the access line (client address, method, path without
    /// secrets, status, bytes, milliseconds) and counts the request.
    fn write(&self, app: &App, bytes: u64) {
        let took = self.start.elapsed();
        let AccessLine {
            client,
            method,
            target,
            status,
            ..
        } = self;
        log::info!(target: "access", "{client} {method} {target} {status} {bytes} {}ms", took.as_millis());
        app.metrics.record_request(self.route, *status, took);
    }
}

/// The body of a streamed reply as tiny_http reads it, on the connection's
/// thread: pulls the source's pieces; when dropped (the body ended, the
/// client was cut off or left) gives its slot back and writes the access
/// line, once.
struct StreamBody {
    source: Box<dyn BodySource>,
    piece: Vec<u8>,
    at: usize,
    ended: bool,
    bytes: u64,
    app: Arc<App>,
    line: AccessLine,
    slot: StreamSlot,
}

impl std::io::Read for StreamBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at >= self.piece.len() {
            if self.ended {
                return Ok(0);
            }
            let stop = Arc::clone(&self.slot.0.stop);
            let source = &mut self.source;
            let next =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.next_piece(&stop)));
            match next {
                // Nothing yet: tiny_http looks whether the client is still
                // there, then reads again.
                Ok(Some(p)) if p.is_empty() => {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                Ok(Some(p)) => {
                    self.piece = p;
                    self.at = 0;
                }
                Ok(None) => self.ended = true,
                Err(_) => {
                    self.ended = true;
                    log::error!("streamed reply panicked on {}", self.line.target);
                    return Err(std::io::Error::other("the body's source failed"));
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        self.bytes += n as u64;
        Ok(n)
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.line.write(&self.app, self.bytes);
    }
}

struct Lane {
    tx: Sender<tiny_http::Request>,
    workers: Vec<JoinHandle<()>>,
}

impl Lane {
    fn start(
        name: &str,
        threads: usize,
        capacity: usize,
        app: &Arc<App>,
        routes: &'static [Route],
        streams: &Arc<Streams>,
    ) -> Lane {
        let (tx, rx) = bounded::<tiny_http::Request>(capacity);
        let workers = (0..threads)
            .map(|i| {
                let rx: Receiver<tiny_http::Request> = rx.clone();
                let app = Arc::clone(app);
                let streams = Arc::clone(streams);
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        for req in rx.iter() {
                            handle(&app, routes, &streams, req);
                        }
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        Lane { tx, workers }
    }
}

/// Does the request carry a body to read?
fn has_body(req: &tiny_http::Request) -> bool {
    req.body_length().is_some_and(|n| n > 0)
        || req
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"))
}

/// Serves `routes` until `stop` is set, then stops taking new work, lets
/// in-flight requests finish (at most SHUTDOWN_GRACE_SECS) and returns.
pub fn serve(
    app: Arc<App>,
    routes: &'static [Route],
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let limits = connection_limits(&app.cfg);
    app.metrics.watch_connections(Arc::new(ConnectionCounts {
        stats: Arc::clone(&limits.stats),
        limit: limits.max_connections as u64,
    }));
    let server = tiny_http::Server::from_listener_with_limits(listener, None, limits)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let workers = app.cfg.workers;
    let streams = Streams::new(app.cfg.log_followers_max, Arc::clone(&stop));
    let body = Lane::start("body", workers, workers * 4, &app, routes, &streams);
    let light_threads = (workers / 4).clamp(2, 8);
    let light = Lane::start("light", light_threads, 64, &app, routes, &streams);

    while !stop.load(Ordering::Acquire) {
        let req = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        // Refused from here (a reply built in memory; the connection's own
        // thread writes it, so this loop never waits on a client's socket).
        if let Some(e) = refusal(&req) {
            req.close_connection();
            respond_and_log(
                &app,
                &streams,
                req,
                "refused",
                Reply::error(&e),
                Instant::now(),
            );
            continue;
        }
        let lane = if has_body(&req) { &body } else { &light };
        match lane.tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) | Err(TrySendError::Disconnected(req)) => {
                // Answered here: the reply is handed to the connection's own
                // thread (tiny_http, HONE-PATCH 12), never written by this
                // loop; the connection is closed rather than its body drained.
                app.metrics.rejected_overload.inc();
                respond_unavailable(&app, &streams, req, "the server is busy; try again shortly");
            }
        }
    }

    log::info!("shutting down: no new requests; waiting for in-flight ones");
    let grace = Duration::from_secs(app.cfg.shutdown_grace_secs);
    let deadline = Instant::now() + grace;
    drop(body.tx);
    drop(light.tx);
    let mut pending: Vec<JoinHandle<()>> = body.workers.into_iter().chain(light.workers).collect();
    // Streamed replies see `stop` and end within about a second.
    while (!pending.is_empty() || streams.active() > 0) && Instant::now() < deadline {
        // Meanwhile, requests still arriving are told to come back.
        if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) {
            respond_unavailable(
                &app,
                &streams,
                req,
                "the server is shutting down; try again shortly",
            );
        }
        pending.retain(|h| !h.is_finished());
    }
    if !pending.is_empty() || streams.active() > 0 {
        log::warn!(
            "{} request(s) and {} streamed repl(ies) still running after SHUTDOWN_GRACE_SECS ({grace:?}); abandoning them",
            pending.len(),
            streams.active()
        );
    }
    Ok(())
}

fn respond_unavailable(app: &Arc<App>, streams: &Arc<Streams>, req: tiny_http::Request, why: &str) {
    let start = Instant::now();
    let e = crate::error::ApiError {
        retry_after: Some(1),
        ..crate::error::ApiError::unavailable(why)
    };
    respond_and_log(app, streams, req, "overload", Reply::error(&e), start);
}

/// Raises the soft open-file limit to the hard one and returns the soft
/// limit in force (None when it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum)
        && cur < max
    {
        let raised = Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => log::info!("open-file limit raised from {cur} to {max}"),
            Err(e) => log::warn!("cannot raise the open-file limit from {cur} to {max}: {e}"),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Descriptors kept for everything but client connections: the store's
/// connections, files being written, hub requests, followed builds.
fn reserved_descriptors(cfg: &crate::config::Config) -> u64 {
    32 + 2 * cfg.workers as u64 + cfg.follow_max_jobs as u64
}

/// The connection caps: MAX_CONNECTIONS, lowered to what the open-file
/// limit allows (each connection takes two descriptors), and the share of
/// one client address; the idle and body-rate limits.
fn connection_limits(cfg: &crate::config::Config) -> tiny_http::Limits {
    let soft = raise_open_file_limit();
    let open_now = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(16);
    let max = match soft {
        Some(soft) => {
            let spare = soft.saturating_sub(open_now + reserved_descriptors(cfg));
            let fit = usize::try_from(spare / 2).unwrap_or(usize::MAX).max(4);
            if fit < cfg.max_connections {
                log::warn!(
                    "open-file limit {soft} allows {fit} connections, fewer than MAX_CONNECTIONS={}: serving at most {fit} (raise LimitNOFILE)",
                    cfg.max_connections
                );
            }
            fit.min(cfg.max_connections)
        }
        None => cfg.max_connections,
    };
    let per_client = (max * cfg.max_connections_per_client_percent / 100).max(1);
    log::info!(
        "connections: at most {max} at once, {per_client} per client address; idle keep-alive closed after {}s",
        cfg.keepalive_idle_secs
    );
    tiny_http::Limits {
        max_connections: max,
        max_per_client: per_client,
        stats: Arc::default(),
        conn: tiny_http::ConnLimits {
            idle_timeout: Some(Duration::from_secs(cfg.keepalive_idle_secs)),
            body_min_rate: cfg.body_min_rate,
            body_grace: Duration::from_secs(cfg.body_rate_grace_secs),
        },
    }
}

/// tiny_http's connection counts (HONE-PATCH 21) as the metrics read them.
struct ConnectionCounts {
    stats: Arc<tiny_http::ConnStats>,
    limit: u64,
}

impl crate::metrics::ConnectionStats for ConnectionCounts {
    fn open(&self) -> u64 {
        self.stats.open()
    }
    fn limit(&self) -> u64 {
        self.limit
    }
    fn refused_total_cap(&self) -> u64 {
        self.stats.refused_total_cap()
    }
    fn refused_per_client_cap(&self) -> u64 {
        self.stats.refused_per_client_cap()
    }
}

/// Requests refused before any handler runs, whatever their route:
/// - HTTP/1.1 without exactly one `Host` (or several on HTTP/1.0): 400;
/// - a protocol upgrade (`Upgrade`, `Connection: upgrade`): 400.
///
/// (A body-carrying method without Content-Length or chunked coding is
/// 411 once its route is known: `router::route`.)
fn refusal(req: &tiny_http::Request) -> Option<crate::error::ApiError> {
    use crate::error::ApiError;
    let headers = req.headers();
    let count = |name: &str| {
        headers
            .iter()
            .filter(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .count()
    };
    let hosts = count("Host");
    if hosts > 1 || (hosts == 0 && *req.http_version() >= (1, 1)) {
        return Some(ApiError::bad_request(format!(
            "an HTTP/1.1 request needs exactly one Host header (found {hosts})"
        )));
    }
    let upgrade = count("Upgrade") > 0
        || headers
            .iter()
            .filter(|h| h.field.equiv("Connection"))
            .any(|h| {
                h.value
                    .as_str()
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            });
    if upgrade {
        return Some(ApiError::bad_request(
            "protocol upgrades (Upgrade, Connection: upgrade) are not supported",
        ));
    }
    None
}

/// Handles one request on a worker thread: route, respond, log, count.
fn handle(app: &Arc<App>, routes: &[Route], streams: &Arc<Streams>, mut req: tiny_http::Request) {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let url = router::origin_form(req.url()).into_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        router::route(app, routes, &mut req, &method, path, query)
    }));
    let (route, reply) = outcome.unwrap_or_else(|_| {
        log::error!(
            "handler panicked on {method} {}",
            router::loggable_target(path, "", &[])
        );
        (
            "panic",
            Reply::error(&crate::error::ApiError::internal("internal error")),
        )
    });
    respond_and_log(app, streams, req, route, reply, start);
}

/// Sends the reply, writes the access line (client address, method, path
/// without secrets, status, bytes, milliseconds) and counts it; for a
/// streamed reply, once its body has ended (or 503 when LOG_FOLLOWERS_MAX
/// are being written).
fn respond_and_log(
    app: &Arc<App>,
    streams: &Arc<Streams>,
    req: tiny_http::Request,
    route: &'static str,
    mut reply: Reply,
    start: Instant,
) {
    if let Some(source) = reply.stream.take() {
        match streams.acquire() {
            Some(slot) => return respond_streamed(app, req, route, reply, source.0, slot, start),
            None => {
                // `unavailable` says Retry-After: 5.
                let e = crate::error::ApiError::unavailable(format!(
                    "{} logs are being followed, the most this server allows \
                     (LOG_FOLLOWERS_MAX); try again later",
                    streams.max
                ));
                reply = Reply::error(&e);
            }
        }
    }
    let line = AccessLine::of(app, &req, route, reply.status, start);
    let bytes = reply.body.len() as u64;
    // An error may leave a body unread: close the connection instead of
    // draining it (a client that stalls would otherwise hold this thread).
    // A body on GET/HEAD (or any method whose handler reads none) is never
    // read: close too, so its bytes can never run as the next request.
    close_if_body_unread(&req, reply.status);
    if let Err(e) = req.respond(reply.into_response()) {
        log::debug!("writing response for {} {}: {e}", line.method, line.target);
    }
    line.write(app, bytes);
}

fn close_if_body_unread(req: &tiny_http::Request, status: u16) {
    let bodiless = matches!(req.method().as_str(), "GET" | "HEAD" | "DELETE" | "OPTIONS");
    if (status >= 400 || bodiless) && has_body(req) {
        req.close_connection();
    }
}

/// Hands a streamed reply over to the connection's thread (which pulls
/// `source`); the access line is written when its body is dropped.
fn respond_streamed(
    app: &Arc<App>,
    req: tiny_http::Request,
    route: &'static str,
    reply: Reply,
    source: Box<dyn BodySource>,
    slot: StreamSlot,
    start: Instant,
) {
    let line = AccessLine::of(app, &req, route, reply.status, start);
    close_if_body_unread(&req, reply.status);
    let body = StreamBody {
        source,
        piece: Vec::new(),
        at: 0,
        ended: false,
        bytes: 0,
        app: Arc::clone(app),
        line,
        slot,
    };
    if let Err(e) = req.respond_streamed(reply.into_streamed_response(body)) {
        log::debug!("handing a streamed reply over: {e}");
    }
}
