//! The upload's tarball checked whole before it is recorded (`publish` feeds
//! the check the decoded bytes while it writes them to disk): a gzip stream
//! that ends properly (its CRC and length match; bytes after the end are
//! ignored, as `gzip -d` does), a tar archive inside
//! whose headers all parse, and the `entry` file among its members. A
//! tarball the hub could not build is refused here instead of spending a
//! hub build (and the publisher's quota).

use std::io::{self, Read};
use std::path::{Component, Path};

/// Why a tarball was refused, for the client (no server paths).
#[derive(Debug, PartialEq, Eq)]
pub enum TarballError {
    /// The gzip stream is corrupt or truncated (what follows its end, as
    /// `gzip` does, is not looked at).
    Gzip(String),
    /// The decompressed bytes are not a tar archive.
    Tar(String),
    /// The archive does not hold the entry file; `first` is a member seen.
    NoEntry {
        entry: String,
        first: Option<String>,
    },
    /// It expands to more than the limit (a decompression bomb).
    TooBig(u64),
}

/// The gzip layer, remembering whether an error came from it (and not
/// from the tar layer above), and counting what it hands out.
struct Gz<R: Read> {
    inner: flate2::read::GzDecoder<R>,
    failed: bool,
    out: u64,
    max: u64,
}

impl<R: Read> Read for Gz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.out += n as u64;
                if self.out > self.max {
                    self.failed = true;
                    return Err(io::Error::other("too big"));
                }
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

fn gzip_message(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        "the gzip stream is truncated".to_string()
    } else {
        format!("the gzip stream is corrupt ({e})")
    }
}

/// Reads `r` to its end.
fn drain(r: &mut impl Read) -> io::Result<()> {
    let mut sink = [0u8; 8192];
    loop {
        match r.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The path of a member with `./` components dropped.
fn normalized(p: &Path) -> Vec<String> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// Reads `source` (a whole `.tar.gz`) to its end: every gzip byte is
/// decoded and its trailer checked, every tar header parsed, and `entry`
/// must be one of the members. At most `max_unpacked` decompressed bytes.
pub fn check(source: impl Read, entry: &str, max_unpacked: u64) -> Result<(), TarballError> {
    let mut gz = Gz {
        inner: flate2::read::GzDecoder::new(source),
        failed: false,
        out: 0,
        max: max_unpacked,
    };
    let want = normalized(Path::new(entry));
    let mut found = false;
    let mut first = None;
    let fail = |gz: &Gz<_>, e: io::Error| -> TarballError {
        if gz.out > gz.max {
            TarballError::TooBig(gz.max)
        } else if gz.failed {
            TarballError::Gzip(gzip_message(&e))
        } else {
            TarballError::Tar(e.to_string())
        }
    };
    {
        let mut archive = tar::Archive::new(&mut gz);
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => return Err(TarballError::Tar(e.to_string())),
        };
        let mut error = None;
        for member in entries {
            match member {
                Ok(m) => {
                    let Ok(path) = m.path() else { continue };
                    let path = normalized(&path);
                    if first.is_none() && !path.is_empty() {
                        first = Some(path.join("/"));
                    }
                    if path == want && m.header().entry_type().is_file() {
                        found = true;
                    }
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = error {
            if !gz.failed {
                // Garbage from a damaged deflate stream reaches the tar layer
                // before the gzip layer notices: decode the rest, and report
                // the gzip error (the cause) when there is one.
                if let Err(g) = drain(&mut gz) {
                    return Err(fail(&gz, g));
                }
            }
            return Err(fail(&gz, e));
        }
    }
    if first.is_none() && gz.out == 0 {
        return Err(TarballError::Tar("it is empty".into()));
    }
    // The rest of the stream (the archive's padding, the gzip trailer with
    // its CRC): decoded to the end so a corrupt or truncated tail is seen.
    if let Err(e) = drain(&mut gz) {
        return Err(fail(&gz, e));
    }
    if !found {
        return Err(TarballError::NoEntry {
            entry: entry.to_string(),
            first,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, d) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, *d).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(&tar).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn accepts_a_tarball_with_its_entry() {
        let t = tar_gz(&[("./src/index.ts", b"x"), ("package.json", b"{}")]);
        assert_eq!(check(&t[..], "src/index.ts", 1 << 20), Ok(()));
    }

    #[test]
    fn refuses_what_the_hub_could_not_build() {
        let good = tar_gz(&[("src/index.ts", &[7u8; 5000])]);
        let r = check(&good[..good.len() - 10], "src/index.ts", 1 << 20);
        assert!(
            matches!(&r, Err(TarballError::Gzip(m)) if m.contains("truncated")),
            "{r:?}"
        );
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 6] ^= 1; // the CRC
        assert!(matches!(
            check(&bad[..], "src/index.ts", 1 << 20),
            Err(TarballError::Gzip(_))
        ));
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(&[b'x'; 2000]).unwrap();
        let text = w.finish().unwrap();
        assert!(matches!(
            check(&text[..], "src/index.ts", 1 << 20),
            Err(TarballError::Tar(_))
        ));
        assert_eq!(
            check(&good[..], "lib/main.ts", 1 << 20),
            Err(TarballError::NoEntry {
                entry: "lib/main.ts".into(),
                first: Some("src/index.ts".into())
            })
        );
        assert_eq!(
            check(&good[..], "src/index.ts", 1000),
            Err(TarballError::TooBig(1000))
        );
    }
}
