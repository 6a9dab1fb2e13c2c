//! One WebSocket connection to Perry Hub, following one job: connect with
//! a deadline, subscribe (the first and only subscription on the socket),
//! read messages with a short poll interval, ping every [`PING_EVERY`].

use super::message::HubMessage;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The hub drops idle subscribers and never pings: we ping this often.
pub const PING_EVERY: Duration = Duration::from_secs(25);
/// A connection on which nothing at all arrived (not even the pong to our
/// pings) for this long is taken for dead (a dropped NAT flow, a hub host
/// gone without a reset): closed, so that the job is subscribed again.
pub const SILENT_AFTER: Duration = Duration::from_secs(55);
/// Largest message accepted from the hub (a log line, an artifact notice).
const MAX_MESSAGE: usize = 1 << 20;

/// What reading the socket gave.
#[derive(Debug)]
pub enum Event {
    Message(HubMessage),
    /// Nothing arrived within the poll interval.
    Idle,
    /// The connection is over (closed by the hub, broken, or timed out).
    Closed(String),
}

pub struct HubSocket {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    last_ping: Instant,
    /// When the last frame of any kind arrived.
    last_heard: Instant,
    ping_every: Duration,
    silent_after: Duration,
}

impl HubSocket {
    /// Connects to `url` (`ws://` or `wss://`) within `timeout`; reads then
    /// wait at most `poll` before answering [`Event::Idle`].
    pub fn connect(url: &str, timeout: Duration, poll: Duration) -> Result<HubSocket, String> {
        let uri: tungstenite::http::Uri = url.parse().map_err(|e| format!("invalid URL: {e}"))?;
        let host = uri.host().ok_or("the URL has no host")?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("wss") {
                443
            } else {
                80
            });
        let addrs: Vec<_> = (host.trim_matches(|c| c == '[' || c == ']'), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let mut last = format!("no address for {host}");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        // The handshake is bounded by `timeout`; reads afterwards by `poll`.
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, _) = tungstenite::client_tls_with_config(url, stream, Some(config), None)
            .map_err(|e| format!("WebSocket handshake failed: {e}"))?;
        let tcp = match ws.get_ref() {
            MaybeTlsStream::Plain(s) => s,
            MaybeTlsStream::Rustls(s) => s.get_ref(),
            _ => return Err("unsupported stream".into()),
        };
        tcp.set_read_timeout(Some(poll))
            .map_err(|e| e.to_string())?;
        Ok(HubSocket {
            ws,
            last_ping: Instant::now(),
            last_heard: Instant::now(),
            ping_every: PING_EVERY,
            silent_after: SILENT_AFTER,
        })
    }

    /// Other ping and silence intervals than [`PING_EVERY`] and
    /// [`SILENT_AFTER`] (tests).
    pub fn with_keepalive(mut self, ping_every: Duration, silent_after: Duration) -> HubSocket {
        self.ping_every = ping_every;
        self.silent_after = silent_after;
        self
    }

    /// Subscribes to `job_id`: must be the first message on the socket.
    pub fn subscribe(&mut self, job_id: &str) -> Result<(), String> {
        self.send_json(serde_json::json!({"type": "subscribe", "job_id": job_id}))
    }

    /// Asks the hub to cancel `job_id` (best effort).
    pub fn cancel(&mut self, job_id: &str) -> Result<(), String> {
        self.send_json(serde_json::json!({"type": "cancel", "job_id": job_id}))
    }

    fn send_json(&mut self, v: serde_json::Value) -> Result<(), String> {
        self.ws
            .send(Message::text(v.to_string()))
            .map_err(|e| format!("WebSocket send failed: {e}"))
    }

    /// The next event; pings first when one is due.
    pub fn next_event(&mut self) -> Event {
        if self.last_ping.elapsed() >= self.ping_every {
            self.last_ping = Instant::now();
            if let Err(e) = self.ws.send(Message::Ping(Vec::new().into())) {
                return Event::Closed(format!("ping failed: {e}"));
            }
        }
        let event = self.read_event();
        match event {
            Event::Idle if self.last_heard.elapsed() >= self.silent_after => {
                Event::Closed(format!(
                    "nothing arrived for {} s, not even a pong",
                    self.silent_after.as_secs()
                ))
            }
            other => other,
        }
    }

    fn read_event(&mut self) -> Event {
        let read = self.ws.read();
        if read.is_ok() {
            self.last_heard = Instant::now();
        }
        match read {
            Ok(Message::Text(t)) => Event::Message(HubMessage::parse(t.as_str())),
            Ok(Message::Close(frame)) => Event::Closed(match frame {
                Some(f) => format!("closed by the hub ({} {})", f.code, f.reason),
                None => "closed by the hub".into(),
            }),
            Ok(_) => Event::Idle, // pings are answered by tungstenite; pongs, binary: ignored
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Flush a pending pong or ping.
                match self.ws.flush() {
                    Ok(()) => Event::Idle,
                    Err(tungstenite::Error::Io(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        Event::Idle
                    }
                    Err(e) => Event::Closed(e.to_string()),
                }
            }
            Err(e) => Event::Closed(e.to_string()),
        }
    }

    /// Closes the connection politely (best effort, bounded by the socket timeouts).
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A hub whose connection goes silent (it accepts the WebSocket, then
    /// neither answers pings nor closes) is taken for dead, not waited on.
    #[test]
    fn a_silent_connection_is_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let ws = tungstenite::accept(stream).unwrap();
            // Hold the connection without reading or writing anything.
            std::thread::sleep(Duration::from_secs(3));
            drop(ws);
        });
        let mut sock = HubSocket::connect(
            &format!("ws://{addr}/ws"),
            Duration::from_secs(2),
            Duration::from_millis(50),
        )
        .unwrap()
        .with_keepalive(Duration::from_millis(200), Duration::from_millis(600));
        let start = Instant::now();
        let why = loop {
            match sock.next_event() {
                Event::Closed(why) => break why,
                Event::Idle => assert!(start.elapsed() < Duration::from_secs(2), "still waiting"),
                Event::Message(m) => panic!("unexpected {m:?}"),
            }
        };
        assert!(why.contains("nothing arrived"), "{why}");
        assert!(start.elapsed() >= Duration::from_millis(600));
        server.join().unwrap();
    }
}
