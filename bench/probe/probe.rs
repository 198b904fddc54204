//! `sluice-bench-probe`: closed-loop HTTP/1.1 client that measures time to first streamed event and total
//! time per request, which neither wrk nor oha report.
//!
//! Built by the bench suite with plain `rustc -O` (std only, no crates, so it compiles in seconds and
//! adds nothing to the workspace). Each connection is one thread with one keep-alive socket; a request's
//! clock starts just before its bytes are written. "First byte" is the moment the de-chunked body first
//! contains `--marker` (default `data:`, the start of the first server-sent event), so a gateway that
//! sends its response head early but holds the first event back is not credited for the head.
//!
//! Output: one JSON object on stdout with counts and nanosecond percentiles.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Debug)]
struct Options {
    addr: String,
    path: String,
    headers: Vec<String>,
    body: Vec<u8>,
    connections: usize,
    duration: Duration,
    max_requests: u64,
    warmup: u64,
    marker: Vec<u8>,
    timeout: Duration,
}

const USAGE: &str = "usage: probe --addr HOST:PORT --path PATH --body-file FILE [--header 'K: V']... \
[--connections N] [--duration SECONDS] [--requests N] [--warmup N] [--marker TEXT] [--timeout SECONDS]";

fn parse_args() -> Result<Options, Error> {
    let mut options = Options {
        addr: String::new(),
        path: "/".into(),
        headers: Vec::new(),
        body: Vec::new(),
        connections: 1,
        duration: Duration::from_secs(5),
        max_requests: u64::MAX,
        warmup: 20,
        marker: b"data:".to_vec(),
        timeout: Duration::from_secs(30),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--addr" => options.addr = value()?,
            "--path" => options.path = value()?,
            "--header" => options.headers.push(value()?),
            "--body-file" => options.body = std::fs::read(value()?)?,
            "--connections" => options.connections = value()?.parse()?,
            "--duration" => options.duration = Duration::from_secs_f64(value()?.parse()?),
            "--requests" => options.max_requests = value()?.parse()?,
            "--warmup" => options.warmup = value()?.parse()?,
            "--marker" => options.marker = value()?.into_bytes(),
            "--timeout" => options.timeout = Duration::from_secs_f64(value()?.parse()?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}").into()),
        }
    }
    if options.addr.is_empty() || options.connections == 0 {
        return Err(USAGE.into());
    }
    Ok(options)
}

/// Times of one completed request, in nanoseconds since its bytes were written.
struct Sample {
    first_event_ns: Option<u64>,
    total_ns: u64,
}

/// One keep-alive connection and its read buffer.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    fn open(options: &Options) -> Result<Self, Error> {
        let stream = TcpStream::connect(&options.addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(options.timeout))?;
        Ok(Self { stream, buffer: Vec::with_capacity(64 * 1024) })
    }

    /// Reads more bytes into the buffer; an orderly close before the response ended is an error.
    fn fill(&mut self) -> Result<(), Error> {
        let mut chunk = [0u8; 16 * 1024];
        let read = self.stream.read(&mut chunk)?;
        if read == 0 {
            return Err("connection closed mid-response".into());
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    /// Sends one request and reads its whole response. Returns the status and the sample.
    fn exchange(&mut self, request: &[u8], marker: &[u8]) -> Result<(u16, Sample, bool), Error> {
        let started = Instant::now();
        self.stream.write_all(request)?;
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).to_ascii_lowercase();
        let status: u16 = head.split_whitespace().nth(1).ok_or("no status line")?.parse()?;
        let chunked = head.contains("\r\ntransfer-encoding: chunked");
        let close = head.contains("\r\nconnection: close");
        let length = header_value(&head, "content-length").map(str::parse::<usize>).transpose()?;
        self.buffer.drain(..head_end);

        let mut body_seen = Vec::new();
        let mut first_event_ns = None;
        let mut note = |data: &[u8], first: &mut Option<u64>| {
            if first.is_none() {
                body_seen.extend_from_slice(data);
                if find(&body_seen, marker).is_some() {
                    *first = Some(nanos(started));
                }
            }
        };
        if chunked {
            loop {
                let line_end = loop {
                    if let Some(at) = find(&self.buffer, b"\r\n") {
                        break at;
                    }
                    self.fill()?;
                };
                let size_text = String::from_utf8_lossy(&self.buffer[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
                self.buffer.drain(..line_end + 2);
                if size == 0 {
                    // Trailer section: zero or more header lines, then an empty line.
                    loop {
                        if let Some(at) = find(&self.buffer, b"\r\n") {
                            let empty = at == 0;
                            self.buffer.drain(..at + 2);
                            if empty {
                                break;
                            }
                        } else {
                            self.fill()?;
                        }
                    }
                    break;
                }
                // Events are small: a chunk is noted once it is complete.
                while self.buffer.len() < size + 2 {
                    self.fill()?;
                }
                note(&self.buffer[..size], &mut first_event_ns);
                self.buffer.drain(..size + 2);
            }
        } else if let Some(length) = length {
            let mut noted = 0;
            while self.buffer.len() < length {
                note(&self.buffer[noted..], &mut first_event_ns);
                noted = self.buffer.len();
                self.fill()?;
            }
            note(&self.buffer[noted..length], &mut first_event_ns);
            self.buffer.drain(..length);
        } else {
            // Body delimited by connection close.
            let mut noted = 0;
            loop {
                note(&self.buffer[noted..], &mut first_event_ns);
                noted = self.buffer.len();
                let mut chunk = [0u8; 16 * 1024];
                let read = self.stream.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                self.buffer.extend_from_slice(&chunk[..read]);
            }
            self.buffer.clear();
            return Ok((status, Sample { first_event_ns, total_ns: nanos(started) }, true));
        }
        Ok((status, Sample { first_event_ns, total_ns: nanos(started) }, close))
    }
}

fn nanos(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

fn request_bytes(options: &Options) -> Vec<u8> {
    let host = &options.addr;
    let mut text = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        options.path,
        options.body.len()
    );
    for header in &options.headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(&options.body);
    bytes
}

/// Per-thread result.
#[derive(Default)]
struct Tally {
    samples: Vec<Sample>,
    errors: u64,
    statuses: Vec<(u16, u64)>,
    first_error: Option<String>,
}

impl Tally {
    fn count_status(&mut self, status: u16) {
        match self.statuses.iter_mut().find(|(code, _)| *code == status) {
            Some((_, count)) => *count += 1,
            None => self.statuses.push((status, 1)),
        }
    }
}

fn worker(options: &Options, request: &[u8], stop: &AtomicBool, budget: u64) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<Connection> = None;
    let mut done: u64 = 0;
    let mut warm: u64 = 0;
    let deadline = Instant::now() + options.duration + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && done < budget && Instant::now() < deadline {
        let conn = match connection.as_mut() {
            Some(conn) => conn,
            None => match Connection::open(options) {
                Ok(opened) => connection.insert(opened),
                Err(error) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| format!("connect: {error}"));
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        match conn.exchange(request, &options.marker) {
            Ok((status, sample, close)) => {
                if close {
                    connection = None;
                }
                if warm < options.warmup {
                    warm += 1;
                    continue;
                }
                tally.count_status(status);
                if status == 200 {
                    tally.samples.push(sample);
                } else {
                    tally.errors += 1;
                }
                done += 1;
            }
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| error.to_string());
                connection = None;
            }
        }
    }
    tally
}

fn percentiles(values: &mut [u64]) -> String {
    if values.is_empty() {
        return "null".into();
    }
    values.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64;
    format!(
        "{{\"min\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{:.0}}}",
        values[0],
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        values[values.len() - 1],
        mean
    )
}

fn run() -> Result<String, Error> {
    let options = parse_args()?;
    let request = Arc::new(request_bytes(&options));
    let stop = Arc::new(AtomicBool::new(false));
    let per_thread = options.max_requests.div_ceil(options.connections as u64).max(1);
    let started = Instant::now();
    let handles: Vec<_> = (0..options.connections)
        .map(|_| {
            let (options, request, stop) = (options.clone(), Arc::clone(&request), Arc::clone(&stop));
            std::thread::spawn(move || worker(&options, &request, &stop, per_thread))
        })
        .collect();
    while started.elapsed() < options.duration && handles.iter().any(|handle| !handle.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for handle in handles {
        let tally = handle.join().map_err(|_| "a worker thread panicked")?;
        total.samples.extend(tally.samples);
        total.errors += tally.errors;
        for (status, count) in tally.statuses {
            for _ in 0..count {
                total.count_status(status);
            }
        }
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut first: Vec<u64> = total.samples.iter().filter_map(|s| s.first_event_ns).collect();
    let mut whole: Vec<u64> = total.samples.iter().map(|s| s.total_ns).collect();
    let statuses: Vec<String> = total.statuses.iter().map(|(code, count)| format!("\"{code}\":{count}")).collect();
    let first_error = total
        .first_error
        .map(|e| format!("\"{}\"", e.replace('\\', "\\\\").replace('"', "'")))
        .unwrap_or_else(|| "null".into());
    Ok(format!(
        "{{\"requests\":{},\"with_first_event\":{},\"errors\":{},\"statuses\":{{{}}},\"first_error\":{},\"elapsed_s\":{:.3},\"first_event_ns\":{},\"total_ns\":{}}}",
        whole.len(),
        first.len(),
        total.errors,
        statuses.join(","),
        first_error,
        elapsed,
        percentiles(&mut first),
        percentiles(&mut whole)
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(json) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{json}").is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("probe: {error}");
            ExitCode::FAILURE
        }
    }
}
