//! The simulated build worker: "builds" a job (see `artifact.rs`) and POSTs the
//! artifact to the job's `artifact_upload_url` the way Perry's Linux worker
//! does (base64 text body, `x-artifact-*` headers, hub bearer token).

use crate::artifact::{ArtifactReader, artifact_sha256};
use crate::state::{Config, Delivery, Job, Sim, hex, now_ms};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::{self, Read};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use ureq::SendBody;

/// At most this much of a response body is recorded.
const MAX_RECORDED_RESPONSE: u64 = 4 * 1024;

/// Builds the agent used for deliveries: non-2xx answers are results, not
/// errors; no proxy from the environment; redirects are not followed.
pub fn make_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        .build()
        .into()
}

/// Knobs that shape a delivery.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryOptions {
    pub artifact_size: u64,
    pub wrong_checksum: bool,
    pub raw_body: bool,
    pub throttle_bytes_per_sec: u64,
}

impl From<&Config> for DeliveryOptions {
    fn from(c: &Config) -> Self {
        DeliveryOptions {
            artifact_size: c.artifact_size,
            wrong_checksum: c.wrong_checksum,
            raw_body: c.raw_body,
            throttle_bytes_per_sec: c.throttle_bytes_per_sec,
        }
    }
}

/// Starts the automatic build of an accepted job on a thread of its own:
/// after the build delay, deliver every target (twice under
/// `deliver_twice`). `config` is the configuration when the job was
/// accepted. Work belonging to a generation before a reset is dropped.
pub fn spawn_build(sim: Arc<Sim>, job: Job, config: Config, generation: u64) {
    let name = format!("build-{}", job.job_id);
    let spawned = thread::Builder::new().name(name).spawn(move || {
        let started = std::time::Instant::now();
        thread::sleep(Duration::from_millis(config.build_delay_ms));
        let opts = DeliveryOptions::from(&config);
        let copies = if config.deliver_twice { 2 } else { 1 };
        for target in &job.targets {
            for attempt in 1..=copies {
                if sim.generation() != generation {
                    return;
                }
                let d = deliver(&sim.agent, &job, target, opts, "auto", attempt);
                let mut s = sim.lock();
                if s.generation != generation {
                    return;
                }
                log_delivery(&d);
                s.record_delivery(d);
            }
        }
        let mut s = sim.lock();
        if s.generation == generation
            && let Some(j) = s.jobs.get_mut(&job.job_id)
        {
            j.delivered = true;
            drop(s);
            crate::realhub::finish_callback_job(&sim, &job.job_id, started);
        }
    });
    if let Err(e) = spawned {
        eprintln!("perry-hub-sim: cannot start build thread: {e}");
    }
}

/// Delivers every target of `job` once, now, with the current configuration
/// (`POST /_sim/deliver/<job_id>`). Returns the recorded deliveries.
pub fn deliver_now(sim: &Sim, job: &Job) -> Vec<Delivery> {
    let opts = DeliveryOptions::from(&sim.config());
    let mut out = Vec::new();
    for target in &job.targets {
        let d = deliver(&sim.agent, job, target, opts, "manual", 1);
        log_delivery(&d);
        let mut s = sim.lock();
        out.push(s.record_delivery(d));
        if let Some(j) = s.jobs.get_mut(&job.job_id) {
            j.delivered = true;
        }
    }
    out
}

fn log_delivery(d: &Delivery) {
    match (&d.status, &d.error) {
        (Some(status), _) => eprintln!(
            "perry-hub-sim: delivered {} ({} bytes) for job {} to {} -> {status}",
            d.artifact_name, d.size, d.job_id, d.url
        ),
        (None, err) => eprintln!(
            "perry-hub-sim: delivery of {} for job {} to {} failed: {}",
            d.artifact_name,
            d.job_id,
            d.url,
            err.as_deref().unwrap_or("?")
        ),
    }
}

/// Performs one delivery of one target's artifact and describes it (the
/// record's `seq` is assigned when it is recorded).
pub fn deliver(
    agent: &ureq::Agent,
    job: &Job,
    target: &str,
    opts: DeliveryOptions,
    kind: &'static str,
    attempt: u32,
) -> Delivery {
    let started_at_ms = now_ms();
    let size = opts.artifact_size;
    let sha = artifact_sha256(&job.tarball_sha256, target, size);
    let mut header_sha = sha;
    if opts.wrong_checksum {
        header_sha[0] ^= 0xff;
    }
    let artifact_name = format!("{}-{}-{}.bin", job.app_name, job.version, target);

    let artifact = ArtifactReader::new(&job.tarball_sha256, target, size);
    let (content_type, body_len, body): (&'static str, u64, Box<dyn Read + Send>) = if opts.raw_body
    {
        ("application/octet-stream", size, Box::new(artifact))
    } else {
        (
            "text/plain",
            size.div_ceil(3) * 4,
            Box::new(Base64Reader::new(artifact)),
        )
    };
    let body: Box<dyn Read + Send> = if opts.throttle_bytes_per_sec > 0 {
        Box::new(Throttled::new(body, opts.throttle_bytes_per_sec))
    } else {
        body
    };

    let result = agent
        .post(&job.upload_url)
        .header("Content-Type", content_type)
        .header("Content-Length", body_len.to_string())
        .header("x-artifact-name", artifact_name.as_str())
        .header("x-artifact-sha256", hex(&header_sha))
        .header("x-artifact-target", target)
        .header("Authorization", format!("Bearer {}", job.hub_token))
        .send(SendBody::from_owned_reader(body));

    let (status, response_body, error) = match result {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let mut buf = Vec::new();
            let read = resp
                .body_mut()
                .as_reader()
                .take(MAX_RECORDED_RESPONSE)
                .read_to_end(&mut buf);
            let error = read.err().map(|e| format!("reading response body: {e}"));
            (
                Some(status),
                Some(String::from_utf8_lossy(&buf).into_owned()),
                error,
            )
        }
        Err(e) => (None, None, Some(e.to_string())),
    };

    Delivery {
        seq: 0,
        job_id: job.job_id.clone(),
        target: target.to_string(),
        kind,
        attempt,
        url: job.upload_url.clone(),
        content_type,
        artifact_name,
        status,
        response_body,
        sha256: hex(&sha),
        header_sha256: hex(&header_sha),
        size,
        error,
        started_at_ms,
        finished_at_ms: now_ms(),
    }
}

/// Encodes a reader as standard base64 (with padding, no line breaks), on
/// the fly.
pub struct Base64Reader<R> {
    inner: R,
    raw: Vec<u8>,
    encoded: Vec<u8>,
    pos: usize,
    done: bool,
}

/// Raw bytes encoded per refill (a multiple of 3: no padding mid-stream).
const RAW_CHUNK: usize = 3 * 4 * 1024;

impl<R: Read> Base64Reader<R> {
    pub fn new(inner: R) -> Self {
        Base64Reader {
            inner,
            raw: vec![0; RAW_CHUNK],
            encoded: Vec::with_capacity(RAW_CHUNK / 3 * 4),
            pos: 0,
            done: false,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        // Fill the raw chunk completely unless the input ends, so that only
        // the final chunk can need padding.
        let mut filled = 0;
        while filled < RAW_CHUNK {
            match self.inner.read(&mut self.raw[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.encoded.resize(filled.div_ceil(3) * 4, 0);
        let n = STANDARD
            .encode_slice(&self.raw[..filled], &mut self.encoded)
            .map_err(io::Error::other)?;
        self.encoded.truncate(n);
        self.pos = 0;
        Ok(())
    }
}

impl<R: Read> Read for Base64Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.encoded.len() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.encoded.len() - self.pos);
        buf[..n].copy_from_slice(&self.encoded[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Limits a reader to about `bytes_per_sec`, in small chunks.
pub struct Throttled<R> {
    inner: R,
    bytes_per_sec: u64,
}

impl<R> Throttled<R> {
    pub fn new(inner: R, bytes_per_sec: u64) -> Self {
        Throttled {
            inner,
            bytes_per_sec,
        }
    }
}

impl<R: Read> Read for Throttled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // About 20 chunks a second, at least one byte each.
        let chunk = (self.bytes_per_sec / 20).clamp(1, 64 * 1024) as usize;
        let want = buf.len().min(chunk);
        let n = self.inner.read(&mut buf[..want])?;
        if n > 0 {
            let nanos = (n as u128 * 1_000_000_000) / u128::from(self.bytes_per_sec);
            thread::sleep(Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_reader_matches_engine() {
        for len in [
            0usize,
            1,
            2,
            3,
            4,
            5,
            RAW_CHUNK - 1,
            RAW_CHUNK,
            RAW_CHUNK + 1,
            50_000,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut out = String::new();
            Base64Reader::new(&data[..])
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, STANDARD.encode(&data), "len {len}");
            assert_eq!(out.len() as u64, (len as u64).div_ceil(3) * 4);
        }
    }
}
