//! hone-build patch: a bounded decoder of `Transfer-Encoding: chunked`.
//!
//! Upstream used the `chunked_transfer` crate's decoder, which collects a
//! chunk-size line until CRLF without a limit (400 MiB of `0` without a CR
//! grew the process by as much), and reads trailers the same way. Here a
//! chunk-size line (size and extensions) is at most [`MAX_SIZE_LINE`] bytes,
//! the trailer section at most [`MAX_TRAILERS`] bytes, every line ends in
//! CRLF (a bare CR or LF is an error), the size is 1-15 hex digits, and the
//! data of each chunk must be followed by CRLF. Any error, or the decoder
//! dropped before the last chunk was read, poisons the connection: it is
//! closed instead of reading the rest of the body as the next request.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The longest chunk-size line, extensions included (without CRLF).
pub const MAX_SIZE_LINE: usize = 1024;
/// The largest trailer section.
pub const MAX_TRAILERS: usize = 8 * 1024;

#[derive(PartialEq, Eq, Clone, Copy)]
enum State {
    Size,
    Data,
    DataEnd,
    Done,
}

pub struct ChunkedDecoder<R> {
    inner: R,
    remaining: u64,
    state: State,
    poison: Arc<AtomicBool>,
}

fn bad(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(inner: R, poison: Arc<AtomicBool>) -> Self {
        ChunkedDecoder {
            inner,
            remaining: 0,
            state: State::Size,
            poison,
        }
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the last chunk",
                    ))
                }
                Ok(_) => return Ok(b[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One line without its CRLF, at most `max` bytes.
    fn line(&mut self, max: usize, what: &str) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            match self.byte()? {
                b'\r' => {
                    if self.byte()? != b'\n' {
                        return Err(bad(format!("bare CR in the {what}")));
                    }
                    return Ok(line);
                }
                b'\n' => return Err(bad(format!("bare LF in the {what}"))),
                b => {
                    if line.len() >= max {
                        return Err(bad(format!("{what} longer than {max} bytes")));
                    }
                    line.push(b);
                }
            }
        }
    }

    fn size(&mut self) -> io::Result<u64> {
        let line = self.line(MAX_SIZE_LINE, "chunk-size line")?;
        let digits = line.split(|&b| b == b';').next().unwrap_or(&[]);
        let digits = match digits.iter().rposition(|&b| b != b' ' && b != b'\t') {
            Some(end) => &digits[..=end],
            None => &[][..],
        };
        if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad("invalid chunk size".to_owned()));
        }
        let text = std::str::from_utf8(digits).map_err(|_| bad("invalid chunk size".to_owned()))?;
        u64::from_str_radix(text, 16).map_err(|_| bad("invalid chunk size".to_owned()))
    }

    fn trailers(&mut self) -> io::Result<()> {
        let mut total = 0;
        loop {
            let left = MAX_TRAILERS.saturating_sub(total);
            let line = self.line(left, "trailer section")?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len() + 2;
        }
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Size => {
                    let n = self.size()?;
                    if n == 0 {
                        self.trailers()?;
                        self.state = State::Done;
                        return Ok(0);
                    }
                    self.remaining = n;
                    self.state = State::Data;
                }
                State::Data => {
                    let want = (buf.len() as u64).min(self.remaining) as usize;
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed before the last chunk",
                        ));
                    }
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataEnd;
                    }
                    return Ok(n);
                }
                State::DataEnd => {
                    if !self.line(0, "end of a chunk")?.is_empty() {
                        return Err(bad("chunk data longer than its size".to_owned()));
                    }
                    self.state = State::Size;
                }
            }
        }
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let r = self.read_inner(buf);
        if r.is_err() {
            self.poison.store(true, Ordering::Release);
            // Never read on after an error.
            self.state = State::Done;
            self.remaining = 0;
            return r;
        }
        r
    }
}

impl<R> Drop for ChunkedDecoder<R> {
    fn drop(&mut self) {
        if self.state != State::Done {
            self.poison.store(true, Ordering::Release);
        }
    }
}

/// hone-build patch: a request body must average at least `min_rate` bytes
/// per second once `grace` has passed since its first read; otherwise the
/// read fails with `TimedOut` (answered 408) and the connection is closed.
/// The socket's read timeout alone let a client sending one byte every few
/// seconds hold a worker for as long as it liked.
pub struct RateFloor<R> {
    inner: R,
    started: Option<std::time::Instant>,
    bytes: u64,
    min_rate: u64,
    grace: std::time::Duration,
    poison: Arc<AtomicBool>,
}

impl<R> RateFloor<R> {
    pub fn new(inner: R, min_rate: u64, grace: std::time::Duration, poison: Arc<AtomicBool>) -> Self {
        RateFloor {
            inner,
            started: None,
            bytes: 0,
            min_rate,
            grace,
            poison,
        }
    }
}

impl<R: Read> Read for RateFloor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let started = *self.started.get_or_insert_with(std::time::Instant::now);
        let r = self.inner.read(buf);
        if let Ok(n) = r {
            self.bytes += n as u64;
        }
        if self.min_rate > 0 {
            let elapsed = started.elapsed();
            if elapsed > self.grace
                && (self.bytes as f64) < self.min_rate as f64 * elapsed.as_secs_f64()
            {
                self.poison.store(true, Ordering::Release);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "request body slower than {} bytes/s after {:?}",
                        self.min_rate, self.grace
                    ),
                ));
            }
        }
        r
    }
}
