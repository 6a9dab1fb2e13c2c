//! A small streaming `multipart/form-data` parser (RFC 7578 / RFC 2046).
//!
//! It reads the request body through a fixed 64 KiB buffer: part bodies are
//! handed out through [`Read`] as they arrive, so a part of hundreds of
//! megabytes (the base64 tarball) never has to be held in memory.

use std::io::{self, Read};

const BUF_SIZE: usize = 64 * 1024;
/// Longest header line accepted inside a part.
const MAX_HEADER_LINE: usize = 8 * 1024;
/// Most header lines accepted inside a part.
const MAX_HEADER_LINES: usize = 32;

/// Extracts the boundary from a `Content-Type` header value, if it is
/// `multipart/form-data` with a non-empty boundary parameter.
pub fn boundary_from_content_type(content_type: &str) -> Option<String> {
    let (mime, params) = match content_type.split_once(';') {
        Some((m, p)) => (m, p),
        None => (content_type, ""),
    };
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = parse_params(params)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)?;
    // RFC 2046: 1 to 70 characters.
    if boundary.is_empty() || boundary.len() > 70 {
        return None;
    }
    Some(boundary)
}

/// Parses `; key=value; key="quoted value"` parameters.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        // Skip separators and whitespace.
        while matches!(chars.peek(), Some(';' | ' ' | '\t')) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        _ => value.push(c),
                    }
                }
                // Anything between the closing quote and the next ';' is ignored.
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    chars.next();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

/// The headers of one part that the simulator cares about.
#[derive(Debug, Clone, Default)]
pub struct PartHeaders {
    /// `name` of the `Content-Disposition` header (empty when absent).
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Inside a part's body.
    InPart,
    /// Just after a delimiter (`\r\n--boundary`), before its `--` or CRLF.
    AfterDelimiter,
    /// The close delimiter has been read.
    Done,
}

fn malformed(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, MultipartError(msg.into()))
}

/// A framing error of the multipart body (as opposed to an I/O error of the
/// connection, or an error of a decoder stacked on a part).
#[derive(Debug)]
pub struct MultipartError(pub String);

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed multipart body: {}", self.0)
    }
}

impl std::error::Error for MultipartError {}

/// Streaming multipart reader over any [`Read`].
pub struct Multipart<R> {
    reader: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    state: State,
}

impl<R: Read> Multipart<R> {
    pub fn new(reader: R, boundary: &str) -> Self {
        let mut buf = vec![0u8; BUF_SIZE].into_boxed_slice();
        // The first boundary is not preceded by CRLF; pretend it is so that a
        // single delimiter pattern matches every boundary.
        buf[..2].copy_from_slice(b"\r\n");
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        Multipart {
            reader,
            buf,
            start: 0,
            end: 2,
            eof: false,
            delimiter,
            state: State::Preamble,
        }
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more data into the buffer. Returns false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Callers never need more than the buffer; treat as a framing error.
            return Err(malformed("line too long"));
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Ensures at least `n` bytes are buffered; false if the input ends first.
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            let avail = self.available();
            if let Some(pos) = find(&avail[searched..], b"\r\n") {
                let line = avail[..searched + pos].to_vec();
                self.start += searched + pos + 2;
                return Ok(line);
            }
            searched = avail.len().saturating_sub(1);
            if avail.len() > MAX_HEADER_LINE {
                return Err(malformed("part header line too long"));
            }
            if !self.fill()? {
                return Err(malformed("body ended inside part headers"));
            }
        }
    }

    /// Advances to the next part and returns its headers, or `None` after the
    /// closing boundary. The unread rest of the current part is skipped.
    pub fn next_part(&mut self) -> io::Result<Option<PartHeaders>> {
        if self.state == State::Done {
            return Ok(None);
        }
        if matches!(self.state, State::Preamble | State::InPart) {
            let was_preamble = self.state == State::Preamble;
            self.state = State::InPart;
            let mut sink = [0u8; 8 * 1024];
            loop {
                match self.read_body(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if was_preamble && e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(malformed("no boundary found in body"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Just after a delimiter: `--` closes, otherwise optional padding + CRLF.
        if !self.ensure(2)? {
            return Err(malformed("body ended after a boundary"));
        }
        if self.available().starts_with(b"--") {
            self.start += 2;
            self.state = State::Done;
            return Ok(None);
        }
        let padding_and_crlf = self.read_line()?;
        if padding_and_crlf.iter().any(|b| *b != b' ' && *b != b'\t') {
            return Err(malformed("garbage after boundary"));
        }
        let mut headers = PartHeaders::default();
        let mut count = 0;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            count += 1;
            if count > MAX_HEADER_LINES {
                return Err(malformed("too many part headers"));
            }
            let line = String::from_utf8_lossy(&line);
            let Some((name, value)) = line.split_once(':') else {
                return Err(malformed(format!("bad part header line {line:?}")));
            };
            let name = name.trim();
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-disposition") {
                let (kind, params) = value.split_once(';').unwrap_or((value, ""));
                if !kind.trim().eq_ignore_ascii_case("form-data") {
                    return Err(malformed(format!(
                        "part disposition {:?} is not form-data",
                        kind.trim()
                    )));
                }
                for (k, v) in parse_params(params) {
                    if k.eq_ignore_ascii_case("name") {
                        headers.name = v;
                    } else if k.eq_ignore_ascii_case("filename") {
                        headers.filename = Some(v);
                    }
                }
            } else if name.eq_ignore_ascii_case("content-type") {
                headers.content_type = Some(value.to_string());
            }
        }
        self.state = State::InPart;
        Ok(Some(headers))
    }

    /// Reads from the current part's body; `Ok(0)` at its end.
    pub fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let dl = self.delimiter.len();
        loop {
            if self.state != State::InPart {
                return Ok(0);
            }
            let avail = &self.buf[self.start..self.end];
            // Only look as far as can be returned now (plus a delimiter's
            // length), so that small reads do not rescan a full buffer.
            let limit = avail.len().min(out.len() + dl - 1);
            let window = &avail[..limit];
            let emit = match find(window, &self.delimiter) {
                Some(0) => {
                    self.start += dl;
                    self.state = State::AfterDelimiter;
                    return Ok(0);
                }
                Some(pos) => pos,
                // The last dl-1 bytes could be the start of a delimiter.
                None => limit.saturating_sub(dl - 1),
            };
            if emit > 0 {
                out[..emit].copy_from_slice(&window[..emit]);
                self.start += emit;
                return Ok(emit);
            }
            if !self.fill()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    MultipartError("body ended inside a part (no closing boundary)".into()),
                ));
            }
        }
    }

    /// A [`Read`] over the current part's body.
    pub fn part_reader(&mut self) -> PartReader<'_, R> {
        PartReader { multipart: self }
    }
}

/// Reads the body of the current part of a [`Multipart`].
pub struct PartReader<'a, R> {
    multipart: &'a mut Multipart<R>,
}

impl<R: Read> Read for PartReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.multipart.read_body(buf)
    }
}

/// Position of `needle` in `haystack` (needle starts with a byte that is rare
/// in base64 text: `\r`).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|b| *b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `chunk` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn parse(body: &[u8], chunk: usize) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut mp = Multipart::new(Trickle(body, chunk), "XyZ");
        let mut out = Vec::new();
        while let Some(h) = mp.next_part()? {
            let mut v = Vec::new();
            // Read some parts fully, skip others, to test both paths.
            if h.name != "skip" {
                mp.part_reader().read_to_end(&mut v)?;
            }
            out.push((h.name, v));
        }
        Ok(out)
    }

    #[test]
    fn parses_parts_with_any_chunking() {
        let big = "A".repeat(200_000);
        let body = format!(
            "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XyZ\r\n\
             Content-Disposition: form-data; name=\"skip\"\r\n\r\nzzz\r\n--XyZ  \r\n\
             Content-Disposition: form-data; name=\"big\"; filename=\"x;y\"\r\nContent-Type: text/plain\r\n\r\n\
             {big}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--XyZ--\r\n"
        );
        for chunk in [1, 2, 3, 7, 100, 1 << 20] {
            let parts = parse(body.as_bytes(), chunk).unwrap();
            assert_eq!(parts.len(), 4, "chunk {chunk}");
            assert_eq!(parts[0], ("a".into(), b"hello".to_vec()));
            assert_eq!(parts[1].0, "skip");
            assert_eq!(parts[2], ("big".into(), big.as_bytes().to_vec()));
            assert_eq!(parts[3], ("e".into(), Vec::new()));
        }
    }

    #[test]
    fn no_preamble_and_crlf_like_content() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--Xy\r\n--XyZ--";
        let parts = parse(body, 5).unwrap();
        assert_eq!(parts, vec![("a".into(), b"\r\n--Xy".to_vec())]);
    }

    #[test]
    fn truncated_is_an_error() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nabc";
        assert!(parse(body, 5).is_err());
        assert!(parse(b"no boundary at all", 5).is_err());
    }

    #[test]
    fn boundary_parsing() {
        assert_eq!(
            boundary_from_content_type("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary_from_content_type("Multipart/Form-Data;boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary_from_content_type("multipart/form-data"), None);
        assert_eq!(boundary_from_content_type("application/json"), None);
    }
}
