//! The HTTP server: a listening socket whose accepted connections inherit
//! read/write timeouts, tiny_http's accept loop, and two fixed pools of
//! worker threads fed over bounded channels:
//!
//! - the *body* lane (WORKERS threads) takes requests that carry a body
//!   (uploads, artifacts), which may take long to read;
//! - the *light* lane takes everything else (`/health`, `/status`,
//!   `/metrics`), so slow uploads can never starve health checks.
//!
//! A full lane answers `503` with `Retry-After` at once, from the accept
//! loop (a small write; the connection is closed, its body never drained).
//! An error answer to a request with a body closes the connection too, so
//! no thread ever waits for the rest of a body nobody will read.

use super::request::Reply;
use super::router::{self, Route};
use crate::app::App;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    ) -> Lane {
        let (tx, rx) = bounded::<tiny_http::Request>(capacity);
        let workers = (0..threads)
            .map(|i| {
                let rx: Receiver<tiny_http::Request> = rx.clone();
                let app = Arc::clone(app);
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        for req in rx.iter() {
                            handle(&app, routes, req);
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
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let workers = app.cfg.workers;
    let body = Lane::start("body", workers, workers * 4, &app, routes);
    let light_threads = (workers / 4).clamp(2, 8);
    let light = Lane::start("light", light_threads, 64, &app, routes);

    while !stop.load(Ordering::Acquire) {
        let req = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        let lane = if has_body(&req) { &body } else { &light };
        match lane.tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(req)) | Err(TrySendError::Disconnected(req)) => {
                // Answered here: a small write that does not block, and the
                // connection is closed rather than its body drained.
                app.metrics
                    .rejected_overload
                    .fetch_add(1, Ordering::Relaxed);
                respond_unavailable(&app, req, "the server is busy; try again shortly");
            }
        }
    }

    log::info!("shutting down: no new requests; waiting for in-flight ones");
    let grace = Duration::from_secs(app.cfg.shutdown_grace_secs);
    let deadline = Instant::now() + grace;
    drop(body.tx);
    drop(light.tx);
    let mut pending: Vec<JoinHandle<()>> = body.workers.into_iter().chain(light.workers).collect();
    while !pending.is_empty() && Instant::now() < deadline {
        // Meanwhile, requests still arriving are told to come back.
        if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) {
            respond_unavailable(&app, req, "the server is shutting down; try again shortly");
        }
        pending.retain(|h| !h.is_finished());
    }
    if !pending.is_empty() {
        log::warn!(
            "{} request(s) still running after SHUTDOWN_GRACE_SECS ({grace:?}); abandoning them",
            pending.len()
        );
    }
    Ok(())
}

fn respond_unavailable(app: &App, req: tiny_http::Request, why: &str) {
    let start = Instant::now();
    let e = crate::error::ApiError {
        retry_after: Some(1),
        ..crate::error::ApiError::unavailable(why)
    };
    respond_and_log(app, req, "overload", Reply::error(&e), start);
}

/// Handles one request on a worker thread: route, respond, log, count.
fn handle(app: &App, routes: &[Route], mut req: tiny_http::Request) {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
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
    respond_and_log(app, req, route, reply, start);
}

/// Sends the reply, writes the access line (client address, method, path
/// without secrets, status, bytes, milliseconds) and counts it.
fn respond_and_log(
    app: &App,
    req: tiny_http::Request,
    route: &'static str,
    reply: Reply,
    start: Instant,
) {
    let client = req
        .remote_addr()
        .map_or_else(|| "-".to_string(), |a| a.ip().to_string());
    let method = router::log_safe(req.method().as_str());
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let target = router::loggable_target(path, query, &app.cfg.secrets());
    let status = reply.status;
    let bytes = reply.body.len();
    // An error may leave a body unread: close the connection instead of
    // draining it (a client that stalls would otherwise hold this thread).
    if status >= 400 && has_body(&req) {
        req.close_connection();
    }
    if let Err(e) = req.respond(reply.into_response()) {
        log::debug!("writing response for {method} {target}: {e}");
    }
    let took = start.elapsed();
    log::info!(target: "access", "{client} {method} {target} {status} {bytes} {}ms", took.as_millis());
    app.metrics.record_request(route, status, took);
}
