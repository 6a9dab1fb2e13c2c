//! Encodings, in one place: lowercase hex, the base64 engine, and streaming
//! base64 in both directions (decoding skips whitespace, as old clients
//! wrap their base64 in lines; encoding feeds the hub's multipart body).

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::io::{self, BufRead, BufReader, Read};

/// Standard alphabet. Decoding is lenient about padding (old clients send
/// none), strict about the alphabet; encoding pads.
pub const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `n` random bytes from the OS, as hex (tokens, temporary names, boundaries).
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut raw = vec![0u8; n];
    getrandom::fill(&mut raw).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex(&raw))
}

/// Decodes base64 from `reader` while it is read, skipping ASCII
/// whitespace. Invalid input is an `InvalidData` error.
pub fn base64_decoder<R: Read>(reader: R) -> impl Read {
    base64::read::DecoderReader::new(SkipWhitespace::new(reader), &BASE64)
}

/// Skips ASCII whitespace (base64 with line breaks).
pub struct SkipWhitespace<R> {
    inner: BufReader<R>,
}

impl<R: Read> SkipWhitespace<R> {
    pub fn new(inner: R) -> SkipWhitespace<R> {
        SkipWhitespace {
            inner: BufReader::with_capacity(64 * 1024, inner),
        }
    }
}

impl<R: Read> Read for SkipWhitespace<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() || out.is_empty() {
                return Ok(0);
            }
            let mut n = 0;
            let mut used = 0;
            for &b in chunk {
                if n == out.len() {
                    break;
                }
                used += 1;
                if !b.is_ascii_whitespace() {
                    out[n] = b;
                    n += 1;
                }
            }
            self.inner.consume(used);
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

/// Reads `inner` and yields its standard base64 encoding (with padding).
pub struct Base64Encoder<R> {
    inner: R,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> Base64Encoder<R> {
    pub fn new(inner: R) -> Base64Encoder<R> {
        Base64Encoder {
            inner,
            raw: vec![0; 48 * 1024],
            out: Vec::with_capacity(64 * 1024),
            pos: 0,
            eof: false,
        }
    }

    /// The encoded length of `n` input bytes.
    pub fn encoded_len(n: u64) -> u64 {
        n.div_ceil(3) * 4
    }

    /// Refills `out` with the encoding of the next block (a multiple of 3
    /// bytes, except at the end).
    fn refill(&mut self) -> io::Result<()> {
        let mut filled = 0;
        while filled < self.raw.len() {
            match self.inner.read(&mut self.raw[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = base64::encoded_len(filled, true).expect("block length fits");
        self.out.resize(len, 0);
        self.pos = 0;
        let written = BASE64
            .encode_slice(&self.raw[..filled], &mut self.out)
            .map_err(io::Error::other)?;
        self.out.truncate(written);
        Ok(())
    }
}

impl<R: Read> Read for Base64Encoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.refill()?;
            if self.out.is_empty() {
                return Ok(0);
            }
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(random_hex(4).unwrap().len(), 8);
    }

    #[test]
    fn encoder_matches_engine_for_all_tail_lengths() {
        for n in [
            0usize,
            1,
            2,
            3,
            4,
            5,
            48 * 1024 - 1,
            48 * 1024,
            48 * 1024 + 1,
            200_000,
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let mut enc = Base64Encoder::new(&data[..]);
            let mut out = Vec::new();
            enc.read_to_end(&mut out).unwrap();
            assert_eq!(out, BASE64.encode(&data).into_bytes(), "n={n}");
            assert_eq!(
                Base64Encoder::<&[u8]>::encoded_len(n as u64),
                out.len() as u64
            );
        }
    }

    #[test]
    fn decoder_skips_whitespace_and_round_trips() {
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut encoded = Vec::new();
        Base64Encoder::new(&data[..])
            .read_to_end(&mut encoded)
            .unwrap();
        let wrapped: Vec<u8> = encoded
            .chunks(76)
            .flat_map(|c| c.iter().copied().chain(*b"\r\n"))
            .collect();
        let mut out = Vec::new();
        base64_decoder(&wrapped[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }
}
