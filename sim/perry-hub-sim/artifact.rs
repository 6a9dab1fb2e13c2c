//! The simulator's deterministic "compiled binary".
//!
//! A real Perry worker compiles the plugin; the simulator instead derives the
//! artifact's bytes from the SHA-256 of the uploaded tarball and the target
//! name, so that tests can predict exactly what will be delivered:
//!
//! ```text
//! seed   = SHA-256(tarball_sha256 || target)
//! block i = SHA-256(seed || (i as u64).to_le_bytes())      for i = 0, 1, 2, ...
//! output = block 0 || block 1 || ...   truncated to `size` bytes
//! ```
//!
//! This file depends only on `sha2` and `std`, so integration tests can include
//! it with `#[path = "../sim/perry-hub-sim/artifact.rs"] mod artifact;`.

// Each includer uses only part of this module.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// Deterministic "compiled binary" for a tarball and a target: tests predict its bytes.
pub fn build_artifact(tarball_sha256: &[u8; 32], target: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    ArtifactReader::new(tarball_sha256, target, size as u64)
        .read_to_end(&mut out)
        .expect("reading from memory cannot fail");
    out
}

/// Streams the same bytes as [`build_artifact`], one 32-byte block at a time,
/// so that large artifacts never have to be held in memory.
pub struct ArtifactReader {
    seed: [u8; 32],
    /// Index of the next block to generate.
    next_block: u64,
    block: [u8; 32],
    /// Read position inside `block`; 32 means "exhausted, generate the next".
    pos: usize,
    remaining: u64,
}

impl ArtifactReader {
    pub fn new(tarball_sha256: &[u8; 32], target: &str, size: u64) -> Self {
        let mut h = Sha256::new();
        h.update(tarball_sha256);
        h.update(target.as_bytes());
        ArtifactReader {
            seed: h.finalize().into(),
            next_block: 0,
            block: [0; 32],
            pos: 32,
            remaining: size,
        }
    }
}

impl Read for ArtifactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() && self.remaining > 0 {
            if self.pos == 32 {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.next_block.to_le_bytes());
                self.block = h.finalize().into();
                self.next_block += 1;
                self.pos = 0;
            }
            let n = (32 - self.pos)
                .min(buf.len() - written)
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            buf[written..written + n].copy_from_slice(&self.block[self.pos..self.pos + n]);
            self.pos += n;
            written += n;
            self.remaining -= n as u64;
        }
        Ok(written)
    }
}

/// SHA-256 of the artifact, computed by streaming it (never held whole).
pub fn artifact_sha256(tarball_sha256: &[u8; 32], target: &str, size: u64) -> [u8; 32] {
    let mut reader = ArtifactReader::new(tarball_sha256, target, size);
    let mut h = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .expect("reading from memory cannot fail");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_definition() {
        let tar = [7u8; 32];
        let mut h = Sha256::new();
        h.update(tar);
        h.update(b"linux");
        let seed: [u8; 32] = h.finalize().into();
        let mut expected = Vec::new();
        for i in 0u64..4 {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(i.to_le_bytes());
            expected.extend_from_slice(&h.finalize());
        }
        for size in [0, 1, 31, 32, 33, 100, 128] {
            assert_eq!(build_artifact(&tar, "linux", size), expected[..size]);
        }
        let sha: [u8; 32] = Sha256::digest(&expected[..100]).into();
        assert_eq!(artifact_sha256(&tar, "linux", 100), sha);
    }
}
