//! Bodies as byte streams, whatever their source (a request, a download
//! from the hub): the MAX_BODY_BYTES limit while streaming, base64 or raw
//! decoding, SHA-256 on the way to a file, and read errors turned into the
//! client's answer. A body is never held whole in memory.

use crate::codec;
use crate::error::ApiError;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};

/// Marker carried inside an `io::Error` when the body passes the limit (the limit).
#[derive(Debug)]
struct TooLarge(u64);
impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body larger than {} bytes", self.0)
    }
}
impl std::error::Error for TooLarge {}

/// Reads at most `max` bytes; one more is an error ([`read_error`] makes it 413).
pub struct Limited<R> {
    inner: R,
    remaining: u64,
    max: u64,
}

impl<R: Read> Limited<R> {
    pub fn new(inner: R, max: u64) -> Limited<R> {
        Limited {
            inner,
            remaining: max,
            max,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than allowed, to tell "exactly max" from "more".
        let cap = (self.remaining.saturating_add(1)).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..cap])?;
        if n as u64 > self.remaining {
            return Err(io::Error::other(TooLarge(self.max)));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// What streaming a body produced.
#[derive(Debug, Clone)]
pub struct Streamed {
    pub size: u64,
    pub sha256: String,
    /// The first bytes of the decoded content (for magic-number checks).
    pub head: Vec<u8>,
}

/// Body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    Base64,
}

/// Decodes `reader` (per `encoding`) into `out`, hashing on the way.
/// Errors are already the client's answer: 400 for bad base64, 413 past the
/// limit, 408 on a read timeout.
pub fn stream_decoded(
    reader: impl Read,
    encoding: Encoding,
    out: &mut impl Write,
) -> Result<Streamed, ApiError> {
    match encoding {
        Encoding::Raw => copy_hashing(reader, out),
        Encoding::Base64 => copy_hashing(codec::base64_decoder(reader), out),
    }
}

fn copy_hashing(mut reader: impl Read, out: &mut impl Write) -> Result<Streamed, ApiError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    let mut head = Vec::with_capacity(8);
    let mut eof = false;
    while !eof {
        // Fill the whole buffer first: the base64 decoder hands out small
        // pieces, and one write per piece made intake several times slower.
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        let chunk = &buf[..filled];
        if head.len() < 8 {
            let take = (8 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
        hasher.update(chunk);
        out.write_all(chunk).map_err(ApiError::from)?;
        size += filled as u64;
    }
    Ok(Streamed {
        size,
        sha256: codec::hex(&hasher.finalize()),
        head,
    })
}

/// Turns a read error into the client's answer.
pub fn read_error(e: io::Error) -> ApiError {
    if let Some(TooLarge(max)) = e.get_ref().and_then(|i| i.downcast_ref::<TooLarge>()) {
        return ApiError::too_large(*max);
    }
    match e.kind() {
        io::ErrorKind::InvalidData => {
            ApiError::bad_request(format!("body is not valid base64: {e}"))
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ApiError::new(
            408,
            "REQUEST_TIMEOUT",
            "request body was not received in time",
        ),
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => ApiError::bad_request("request body ended early"),
        _ => ApiError::bad_request(format!("cannot read request body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn run(input: &[u8], enc: Encoding, max: u64) -> Result<(Streamed, Vec<u8>), ApiError> {
        let mut out = Vec::new();
        let s = stream_decoded(Limited::new(input, max), enc, &mut out)?;
        Ok((s, out))
    }

    #[test]
    fn raw_and_hash() {
        let (s, out) = run(b"abc", Encoding::Raw, 10).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(s.size, 3);
        assert_eq!(
            s.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn base64_with_line_breaks_and_without_padding() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: String = enc
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let (s, out) = run(wrapped.as_bytes(), Encoding::Base64, 1 << 20).unwrap();
        assert_eq!(out, data);
        assert_eq!(s.size, 5000);
        let (_, out) = run(b"YWJjZA", Encoding::Base64, 100).unwrap();
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn invalid_base64_is_400() {
        let e = run(b"YWJj$$$$", Encoding::Base64, 100).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("base64"));
    }

    #[test]
    fn limit_is_exact() {
        assert!(run(b"12345", Encoding::Raw, 5).is_ok());
        let e = run(b"123456", Encoding::Raw, 5).unwrap_err();
        assert_eq!(e.status, 413);
        assert_eq!(e.code, "PAYLOAD_TOO_LARGE");
    }
}
