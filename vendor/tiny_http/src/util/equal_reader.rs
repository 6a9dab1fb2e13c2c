use std::io::Read;
use std::io::Result as IoResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::sync::mpsc::channel;
use std::sync::mpsc::{Receiver, Sender};

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF. If the limit is not reached
/// when the destructor is called, the remaining bytes will be read and
/// thrown away.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    last_read_signal: Sender<IoResult<()>>,
    // hone-build patch: set when the body was not read to its end (drain
    // given up, read error, early EOF): the connection must then be closed,
    // or the rest of this body would be parsed as the next request.
    poison: Option<Arc<AtomicBool>>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize) -> (EqualReader<R>, Receiver<IoResult<()>>) {
        let (tx, rx) = channel();

        let r = EqualReader {
            reader,
            size,
            last_read_signal: tx,
            poison: None,
        };

        (r, rx)
    }
}

impl<R> EqualReader<R>
where
    R: Read,
{
    /// hone-build patch: the connection's flag to set when this body is
    /// not read to its end.
    pub fn with_poison(mut self, poison: Arc<AtomicBool>) -> Self {
        self.poison = Some(poison);
        self
    }

    fn poison(&self) {
        if let Some(p) = &self.poison {
            p.store(true, Ordering::Release);
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 || buf.is_empty() {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            // hone-build patch: the connection ended before the declared
            // length: an error, not the end of the body (upstream returned
            // Ok(0) and a truncated body looked complete).
            Ok(0) => {
                self.poison();
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the declared Content-Length",
                ))
            }
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            Err(e) => {
                self.poison();
                Err(e)
            }
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    // hone-build patch: upstream allocated `vec![0; remaining]` on every
    // iteration, so a request declaring a huge Content-Length that was answered
    // without reading its body made the process allocate that much (and abort
    // when the allocation failed), and a slow client held the answering thread
    // for as long as it liked. Drain with a fixed buffer, at most DRAIN_LIMIT
    // bytes and DRAIN_TIME; past that, poison the connection so that it is
    // closed instead of its remaining bytes being parsed as a request.
    fn drop(&mut self) {
        // The connection is being closed anyway: nothing to drain.
        if self.size > 0
            && self
                .poison
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Acquire))
        {
            self.last_read_signal.send(Ok(())).ok();
            return;
        }
        const DRAIN_LIMIT: usize = 64 * 1024;
        const DRAIN_TIME: Duration = Duration::from_secs(1);
        let mut remaining_to_read = self.size;
        let mut drained = 0usize;
        let mut buf = [0u8; 8192];
        let started = Instant::now();

        while remaining_to_read > 0 {
            if drained >= DRAIN_LIMIT || started.elapsed() >= DRAIN_TIME {
                self.poison();
                self.last_read_signal
                    .send(Err(std::io::Error::other("request body not drained")))
                    .ok();
                break;
            }
            let want = remaining_to_read.min(buf.len());
            match self.reader.read(&mut buf[..want]) {
                Err(e) => {
                    self.poison();
                    self.last_read_signal.send(Err(e)).ok();
                    break;
                }
                Ok(0) => {
                    self.poison();
                    self.last_read_signal.send(Ok(())).ok();
                    break;
                }
                Ok(other) => {
                    remaining_to_read -= other;
                    drained += other;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, _) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }
}
