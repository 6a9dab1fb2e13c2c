use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// hone-build patch: the most a request head (request line and headers) may
/// take; more is answered 431 and the connection closed.
const MAX_HEAD_BYTES: usize = 64 * 1024;

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder};
use crate::Request;
use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};

/// hone-build patch: what the HTTP layer enforces per connection and per body.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// An idle connection (no byte of a next request) is closed after this.
    pub idle_timeout: Option<Duration>,
    /// A body must average at least this many bytes per second...
    pub body_min_rate: u64,
    /// ... once this much time has passed since its first read.
    pub body_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            idle_timeout: None,
            body_min_rate: 0,
            body_grace: Duration::from_secs(10),
        }
    }
}

/// hone-build patch: a request's response is not written to the socket by
/// the thread that answers (a worker of the application): it is handed over
/// a channel to the connection's own thread, which writes it. A client that
/// never reads its responses then blocks only its own connection thread,
/// never a worker or the application's accept loop.
pub(crate) struct ChannelWriter {
    tx: Sender<Outgoing>,
    buf: Vec<u8>,
}

/// hone-build patch: what the thread answering a request hands over to the
/// connection's thread.
pub(crate) enum Outgoing {
    /// Bytes of a response (patch 12), written as they come.
    Bytes(Vec<u8>),
    /// A streamed response (patch 20): the connection's thread writes it
    /// itself, pulling its body from the response's reader as the body is
    /// produced, so nothing is buffered for a client that reads slowly and
    /// no thread of the application is held while it streams.
    Streamed(Box<dyn FnOnce(&mut dyn StreamSink) -> IoResult<()> + Send>),
}

/// hone-build patch (20): where a streamed response is written: the
/// connection's socket, which can also tell whether the client has gone.
pub(crate) trait StreamSink: Write {
    /// Has the client closed or reset the connection?
    fn client_gone(&self) -> bool;
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.buf.extend_from_slice(buf);
        // Like upstream's BufWriter of 1 KiB on the socket: small writes
        // (header lines) are gathered, larger ones go out as they come, so a
        // streamed body is not held back.
        if self.buf.len() >= 1024 {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> IoResult<()> {
        if !self.buf.is_empty() {
            // The connection thread may be gone (the client left): ignored.
            let _ = self.tx.send(Outgoing::Bytes(std::mem::take(&mut self.buf)));
        }
        Ok(())
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// hone-build patch: a writer whose bytes between two flushes must all be
/// written within `timeout` (a streamed response flushes after each piece).
struct PieceDeadline<'a, W: Write> {
    inner: &'a mut W,
    timeout: Option<Duration>,
    since: Option<Instant>,
}

impl StreamSink for PieceDeadline<'_, BufWriter<RefinedTcpStream>> {
    fn client_gone(&self) -> bool {
        self.inner.get_ref().peer_gone()
    }
}

impl<W: Write> Write for PieceDeadline<'_, W> {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.timeout.is_some_and(|t| since.elapsed() > t) {
            return Err(IoError::new(
                ErrorKind::TimedOut,
                "the client does not read the response",
            ));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.inner.flush()?;
        self.since = None;
        Ok(())
    }
}

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    // hone-build patch: written only by the connection's own thread; the
    // response of the request in flight arrives over `pending`.
    sink: BufWriter<RefinedTcpStream>,

    // hone-build patch: the response of the one request in flight (at most
    // one: the next request is read only once this one is written).
    pending: Option<Receiver<Outgoing>>,

    // hone-build patch: the socket's write timeout, also the deadline of
    // each piece of a response as a whole.
    write_timeout: Option<Duration>,

    limits: ConnLimits,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // hone-build patch: set by a request body that was not read to its end;
    // the connection is then closed instead of parsing the rest as a request.
    poisoned: Arc<AtomicBool>,

    // hone-build patch: a request head must arrive within this time from its
    // first byte (the socket's read timeout), so that a client trickling one
    // byte at a time cannot hold a thread for ever.
    head_timeout: Option<Duration>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// hone-build patch: HTTP/0.9 (or below 1.0): answered 505, closed.
    VersionNotSupported,
    /// hone-build patch: no byte of a next request within the idle timeout.
    Idle,
    /// hone-build patch: the request head is larger than MAX_HEAD_BYTES.
    HeadTooLarge,
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: ConnLimits,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let head_timeout = read_socket.read_timeout().ok().flatten();
        let write_timeout = write_socket.write_timeout().ok().flatten();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: BufWriter::with_capacity(1024, write_socket),
            pending: None,
            write_timeout,
            limits,
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            poisoned: Arc::new(AtomicBool::new(false)),
            head_timeout,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    fn read_next_line(
        &mut self,
        head: &mut HeadLimits,
        first: Option<u8>,
    ) -> IoResult<AsciiString> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;
        if let Some(b) = first {
            head.count(self.head_timeout)?;
            prev_byte_was_cr = b == b'\r';
            buf.push(b);
        }

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };
            head.count(self.head_timeout)?;

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                // hone-build patch: a bare CR or LF, or a NUL, inside a line
                // of the head is refused (RFC 9112 2.2, 5.5): 400 and close.
                if buf.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                    return Err(IoError::new(ErrorKind::InvalidData, BadHeadByte));
                }
                return AsciiString::from_ascii(buf)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let (method, path, version, headers) = {
            // reading the request line
            let mut limits = HeadLimits::default();
            let (method, path, version) = {
                // hone-build patch: wait for the first byte of the next
                // request at most the idle timeout, then close.
                let first = self.first_byte()?;
                let line = self
                    .read_next_line(&mut limits, Some(first))
                    .map_err(ReadError::from_head)?;
                // The previous request's body has been released by now: if it
                // was not read to its end, these bytes are not a request.
                if self.poisoned.load(Ordering::Acquire) {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "previous request body not consumed",
                    )));
                }

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                loop {
                    let line = self
                        .read_next_line(&mut limits, None)
                        .map_err(ReadError::from_head)?;

                    if line.is_empty() {
                        break;
                    };
                    // hone-build patch: obsolete line folding (a line that
                    // starts with a space or tab) is refused (RFC 9112 5.2);
                    // upstream trimmed it into a header of its own.
                    if line.as_bytes()[0] == b' ' || line.as_bytes()[0] == b'\t' {
                        return Err(ReadError::WrongHeader(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        if version < HTTPVersion(1, 0) {
            return Err(ReadError::VersionNotSupported);
        }

        // building the writer for the request
        let (tx, rx) = channel();
        self.pending = Some(rx);
        let writer = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
            Arc::clone(&self.poisoned),
            &self.limits,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::BadFraming => ReadError::WrongHeader(version.clone()),
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?
        .with_stream_sink(tx);

        // return the request
        Ok(request)
    }

    /// hone-build patch: the first byte of the next request, waiting at most
    /// the idle timeout (the socket's read timeout is set to it meanwhile).
    fn first_byte(&mut self) -> Result<u8, ReadError> {
        if let Some(t) = self.limits.idle_timeout {
            let _ = self.sink.get_ref().set_read_timeout(Some(t));
        }
        let byte = self.next_header_source.by_ref().bytes().next();
        if self.limits.idle_timeout.is_some() {
            let _ = self.sink.get_ref().set_read_timeout(self.head_timeout);
        }
        match byte {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(ReadError::Idle)
            }
            Some(Err(e)) => Err(ReadError::ReadIoError(e)),
            None => Err(ReadError::ReadIoError(IoError::new(
                ErrorKind::ConnectionAborted,
                "Unexpected EOF",
            ))),
        }
    }

    /// hone-build patch: writes the response of the request in flight as it
    /// arrives from the thread that answers it, each piece within the
    /// socket's write timeout. False when the connection must be closed.
    fn flush_pending(&mut self) -> bool {
        let Some(rx) = self.pending.take() else {
            return true;
        };
        for out in rx.iter() {
            let chunk = match out {
                Outgoing::Bytes(chunk) => chunk,
                Outgoing::Streamed(write) => {
                    // Each piece of the body (one read of its source) must be
                    // written within the write timeout, like a chunk above:
                    // a client that stops reading, or reads a trickle, is cut
                    // off and the response (and its source) dropped.
                    let mut sink = PieceDeadline {
                        inner: &mut self.sink,
                        timeout: self.write_timeout,
                        since: None,
                    };
                    if write(&mut sink).is_err() || self.sink.flush().is_err() {
                        return false;
                    }
                    continue;
                }
            };
            let deadline = self.write_timeout.map(|t| Instant::now() + t);
            for piece in chunk.chunks(16 * 1024) {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    return false;
                }
                if self.sink.write_all(piece).is_err() {
                    return false;
                }
            }
            if self.sink.flush().is_err() {
                return false;
            }
        }
        true
    }

    /// hone-build patch: an answer of the connection itself (no request to
    /// answer through), written directly; the connection is then closed.
    fn answer(&mut self, status: u16, ver: HTTPVersion, body: Option<&str>) {
        use crate::{Response, StatusCode};
        let response = Response::from_string(body.unwrap_or("").to_owned())
            .with_status_code(StatusCode(status))
            .with_connection_close();
        let _ = response.raw_print(&mut self.sink, ver, &[], false, None);
        let _ = self.sink.flush();
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // hone-build patch: the previous request's response is written first
        // (pipelining depth 1), by this thread.
        if !self.flush_pending() {
            return None;
        }
        // hone-build patch: a connection marked to close (an error answer,
        // a body not read to its end) ends with that response.
        if self.poisoned.load(Ordering::Acquire) {
            return None;
        }

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                Err(ReadError::HeadTooLarge) => {
                    self.answer(431, HTTPVersion(1, 1), None);
                    return None;
                }

                // we don't know where the next request would start, so we
                // have to close
                Err(ReadError::WrongRequestLine) => {
                    self.answer(400, HTTPVersion(1, 1), None);
                    return None;
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.answer(400, ver, None);
                    return None;
                }

                Err(ReadError::VersionNotSupported) => {
                    self.answer(
                        505,
                        HTTPVersion(1, 1),
                        Some("This server only supports HTTP versions 1.0 and 1.1"),
                    );
                    return None;
                }

                Err(ReadError::Idle) => return None,

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    self.answer(408, HTTPVersion(1, 1), None);
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    self.answer(417, ver, None);
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                // hone-build patch: answer through the request's own writer.
                // Upstream took a second writer from the sink while `rq` held
                // the first, and the write blocked for ever (a thread and a
                // socket lost per request). Then close: what follows is not
                // HTTP/1.x.
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                rq.respond(response).ok();
                self.flush_pending();
                return None;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// hone-build patch: the size and time budget of one request head.
#[derive(Default)]
struct HeadLimits {
    bytes: usize,
    started: Option<Instant>,
}

impl HeadLimits {
    /// Counts one byte of the head; an error once the head is too large or
    /// has taken longer than `timeout` since its first byte.
    fn count(&mut self, timeout: Option<Duration>) -> IoResult<()> {
        self.bytes += 1;
        if self.bytes > MAX_HEAD_BYTES {
            return Err(IoError::new(ErrorKind::InvalidData, HeadTooLarge));
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        if let Some(t) = timeout {
            if started.elapsed() > t {
                return Err(IoError::new(ErrorKind::TimedOut, "request head too slow"));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct HeadTooLarge;

impl std::fmt::Display for HeadTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request head too large")
    }
}

impl std::error::Error for HeadTooLarge {}

/// hone-build patch: a bare CR/LF or a NUL inside a line of the head.
#[derive(Debug)]
struct BadHeadByte;

impl std::fmt::Display for BadHeadByte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bare CR, LF or NUL in the request head")
    }
}

impl std::error::Error for BadHeadByte {}

impl ReadError {
    fn from_head(e: IoError) -> ReadError {
        if e.get_ref().is_some_and(|i| i.is::<HeadTooLarge>()) {
            ReadError::HeadTooLarge
        } else if e.get_ref().is_some_and(|i| i.is::<BadHeadByte>()) {
            ReadError::WrongRequestLine
        } else {
            ReadError::ReadIoError(e)
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
