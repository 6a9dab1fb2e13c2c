//! The hub's WebSocket server, on a port of its own, any path: one thread
//! per connection (at most [`MAX_CONNECTIONS`]), text frames of JSON.

use crate::realhub::{self, Out};
use crate::state::Sim;
use serde_json::{Value, json};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::{Error, Message, WebSocket};

/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn serve(sim: Arc<Sim>, listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if ACTIVE.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
            eprintln!("perry-hub-sim: websocket: too many connections, closing one");
            continue;
        }
        let slot = Slot;
        let sim = Arc::clone(&sim);
        let spawned = thread::Builder::new().name("ws".into()).spawn(move || {
            let _slot = slot;
            if let Err(e) = connection(&sim, stream) {
                eprintln!("perry-hub-sim: websocket: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("perry-hub-sim: cannot start websocket thread: {e}");
        }
    }
}

fn would_block(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

fn send(ws: &mut WebSocket<TcpStream>, v: &Value) -> Result<(), Error> {
    ws.send(Message::text(v.to_string()))
}

fn close(ws: &mut WebSocket<TcpStream>) {
    let _ = ws.close(None);
    let _ = ws.flush();
}

fn connection(sim: &Sim, stream: TcpStream) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    let mut ws = tungstenite::accept(stream).map_err(|e| format!("handshake: {e}"))?;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel::<Out>();
    let mut tx = Some(tx);
    let mut first = true;
    let mut subscribed: Option<(String, Instant, u64)> = None;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
                let job_id = v.get("job_id").and_then(Value::as_str).unwrap_or("");
                if first {
                    first = false;
                    if ty != "subscribe" {
                        close(&mut ws);
                        return Ok(());
                    }
                    let answer = match tx.take() {
                        Some(tx) => realhub::subscribe(sim, job_id, tx),
                        None => None,
                    };
                    let Some((created, complete)) = answer else {
                        let _ = send(
                            &mut ws,
                            &json!({"type": "error", "code": "JOB_NOT_FOUND",
                                "message": "Job not found"}),
                        );
                        close(&mut ws);
                        return Ok(());
                    };
                    send(&mut ws, &created).map_err(|e| e.to_string())?;
                    if let Some(c) = complete {
                        send(&mut ws, &c).map_err(|e| e.to_string())?;
                    }
                    let after = sim.config().close_subscribers_after_ms;
                    subscribed = Some((job_id.to_string(), Instant::now(), after));
                } else if ty == "cancel" {
                    realhub::cancel(sim, job_id);
                }
                // A second subscribe, or anything else: ignored.
            }
            Ok(Message::Binary(_)) if first => {
                close(&mut ws);
                return Ok(());
            }
            Ok(Message::Close(_)) => {
                let _ = ws.flush();
                return Ok(());
            }
            Ok(Message::Ping(_)) => {
                // The pong is queued by tungstenite; send it now.
                let _ = ws.flush();
            }
            Ok(_) => {}
            Err(e) if would_block(&e) => {}
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        if let Some((job_id, since, after)) = &subscribed {
            loop {
                match rx.try_recv() {
                    Ok(Out::Text(s)) => {
                        ws.send(Message::text(s)).map_err(|e| e.to_string())?;
                    }
                    Ok(Out::Close) => {
                        close(&mut ws);
                        return Ok(());
                    }
                    // Nothing more will come (a finished job answered at
                    // subscribe); the socket stays open until the client
                    // closes it.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if *after > 0 && since.elapsed() >= Duration::from_millis(*after) {
                eprintln!(
                    "perry-hub-sim: closing subscriber of job {job_id} (close_subscribers_after_ms)"
                );
                close(&mut ws);
                return Ok(());
            }
        }
    }
}
