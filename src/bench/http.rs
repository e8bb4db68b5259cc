//! A load generator for `ttp serve`: many clients, each on its own
//! keep-alive HTTP/1.1 connection, asking a mix of routes for a fixed time;
//! latencies per route and every failure counted. Plain `TcpStream`s, so
//! what is measured is the server, not a client library.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// What to ask for.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub addr: SocketAddr,
    pub clients: usize,
    pub duration: Duration,
    /// Paths, asked in turn by each client (a path listed twice is asked
    /// twice as often).
    pub paths: Vec<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
}

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub elapsed: Duration,
    /// Latencies in microseconds, per path.
    pub latencies: BTreeMap<String, Vec<u64>>,
    /// Failures: non-200 statuses and I/O errors, with an example each.
    pub errors: BTreeMap<String, (u64, String)>,
}

impl LoadReport {
    pub fn requests(&self) -> usize {
        self.latencies.values().map(Vec::len).sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// The `p`-th percentile (0–100) of a path's latencies, in ms.
    pub fn percentile(&self, path: &str, p: f64) -> Option<f64> {
        let mut v = self.latencies.get(path)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        Some(v[i.min(v.len() - 1)] as f64 / 1000.0)
    }

    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let mut s = format!(
            "{} requests in {:.1} s ({:.0}/s), {} errors\n",
            self.requests(),
            secs,
            self.requests() as f64 / secs,
            self.error_count()
        );
        s.push_str("route                                     count    p50 ms    p90 ms    p99 ms    max ms\n");
        for (path, v) in &self.latencies {
            let p = |q| self.percentile(path, q).unwrap_or(f64::NAN);
            s.push_str(&format!(
                "{path:<40} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                v.len(),
                p(50.0),
                p(90.0),
                p(99.0),
                p(100.0)
            ));
        }
        for (what, (n, example)) in &self.errors {
            s.push_str(&format!("error {what}: {n} (e.g. {example})\n"));
        }
        s
    }
}

/// Runs the plan: `clients` threads until `duration` has passed.
pub fn run(plan: &LoadPlan) -> LoadReport {
    let start = Instant::now();
    let deadline = start + plan.duration;
    let threads: Vec<_> = (0..plan.clients)
        .map(|i| {
            let plan = plan.clone();
            std::thread::spawn(move || client(&plan, i, deadline))
        })
        .collect();
    let mut report = LoadReport::default();
    for t in threads {
        let Ok(part) = t.join() else {
            let e = report
                .errors
                .entry("client thread panicked".into())
                .or_default();
            e.0 += 1;
            continue;
        };
        for (path, mut v) in part.latencies {
            report.latencies.entry(path).or_default().append(&mut v);
        }
        for (what, (n, example)) in part.errors {
            let e = report.errors.entry(what).or_insert((0, example));
            e.0 += n;
        }
    }
    report.elapsed = start.elapsed();
    report
}

fn client(plan: &LoadPlan, index: usize, deadline: Instant) -> LoadReport {
    let mut report = LoadReport::default();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let fail = |report: &mut LoadReport, what: String, example: String| {
        let e = report.errors.entry(what).or_insert((0, example));
        e.0 += 1;
    };
    let mut turn = index;
    while Instant::now() < deadline {
        let path = &plan.paths[turn % plan.paths.len().max(1)];
        turn += 1;
        if conn.is_none() {
            match TcpStream::connect(plan.addr).and_then(|s| {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                let r = BufReader::new(s.try_clone()?);
                Ok((s, r))
            }) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    fail(&mut report, "connect".into(), e.to_string());
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let Some((stream, reader)) = conn.as_mut() else {
            continue;
        };
        let began = Instant::now();
        match exchange(stream, reader, path, plan.token.as_deref()) {
            Ok((200, _)) => report
                .latencies
                .entry(path.clone())
                .or_default()
                .push(began.elapsed().as_micros() as u64),
            Ok((status, body)) => {
                fail(
                    &mut report,
                    format!("{path}: HTTP {status}"),
                    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                );
            }
            Err(e) => {
                fail(&mut report, format!("{path}: I/O"), e.to_string());
                conn = None;
            }
        }
    }
    report
}

/// One request on a keep-alive connection: the status and the body.
fn exchange(
    stream: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: load\r\n{auth}Connection: keep-alive\r\n\r\n"
    )?;
    stream.flush()?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rendering() {
        let mut r = LoadReport {
            elapsed: Duration::from_secs(1),
            ..LoadReport::default()
        };
        r.latencies
            .insert("/a".into(), (1..=100).map(|ms| ms * 1000).collect());
        assert_eq!(r.percentile("/a", 50.0), Some(51.0));
        assert_eq!(r.percentile("/a", 99.0), Some(99.0));
        assert_eq!(r.percentile("/a", 100.0), Some(100.0));
        assert_eq!(r.percentile("/b", 50.0), None);
        r.errors.insert("/a: HTTP 500".into(), (2, "boom".into()));
        let text = r.render();
        assert!(
            text.starts_with("100 requests in 1.0 s (100/s), 2 errors"),
            "{text}"
        );
        assert!(text.contains("error /a: HTTP 500: 2 (e.g. boom)"));
    }
}
