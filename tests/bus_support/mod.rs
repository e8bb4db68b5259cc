//! A conforming DECNET bus server for the tests (worker-and-api spec §1):
//! a real UNIX socket, one thread per connection, `HELLO`/`SUB`/`UNSUB`/
//! `PUB`/`BYE`, the envelope rewritten by the server (`v`, a fresh `id`,
//! the header's topic, `type`, `ts`, `payload`), fan-out to every *other*
//! connection with a matching pattern, one `EVT` per event, and any
//! protocol error closing that connection only. Plus a client for
//! publishers and observers.

#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use ttp_engine::bus::{read_frame, topic_matches, Frame, Verb};

struct Conn {
    id: u64,
    /// Frames waiting for the connection's writer thread: at most 1024, the
    /// oldest dropped when full (publishers never block, as in DECNET).
    queue: Mutex<VecDeque<Vec<u8>>>,
    ready: Condvar,
    closed: AtomicBool,
    stream: UnixStream,
    patterns: Mutex<BTreeSet<String>>,
    /// The `HELLO` name.
    name: Mutex<String>,
}

impl Conn {
    fn push(&self, frame: Vec<u8>) {
        let mut q = self.queue.lock().unwrap();
        if q.len() >= 1024 {
            q.pop_front();
        }
        q.push_back(frame);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.ready.notify_all();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn write_loop(conn: Arc<Conn>) {
    let mut out = conn.stream.try_clone().unwrap();
    loop {
        // Everything queued goes out in one write.
        let batch: Vec<u8> = {
            let mut q = conn.queue.lock().unwrap();
            loop {
                if conn.closed.load(Ordering::Relaxed) {
                    return;
                }
                if !q.is_empty() {
                    break q.drain(..).flatten().collect();
                }
                q = conn.ready.wait(q).unwrap();
            }
        };
        if out.write_all(&batch).is_err() {
            return;
        }
    }
}

pub struct BusServer {
    pub path: PathBuf,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn truthy(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
    })
}

impl BusServer {
    pub fn start(path: &Path) -> BusServer {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let accept = {
            let (conns, stop) = (conns.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            let conn = Arc::new(Conn {
                                id: next.fetch_add(1, Ordering::Relaxed),
                                queue: Mutex::default(),
                                ready: Condvar::new(),
                                closed: AtomicBool::new(false),
                                stream: stream.try_clone().unwrap(),
                                patterns: Mutex::default(),
                                name: Mutex::default(),
                            });
                            conns.lock().unwrap().push(conn.clone());
                            {
                                let conn = conn.clone();
                                std::thread::spawn(move || write_loop(conn));
                            }
                            let conns = conns.clone();
                            std::thread::spawn(move || serve(stream, conn, conns));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        BusServer {
            path: path.to_path_buf(),
            conns,
            stop,
            accept: Some(accept),
        }
    }

    /// Publishes as the server itself (no sender to skip).
    pub fn publish(&self, topic: &str, kind: &str, payload: Value) {
        fan_out(
            &self.conns,
            u64::MAX,
            topic,
            &json!({"type": kind, "payload": payload}),
        );
    }

    /// Sends raw bytes (a malformed frame) to the connections that said
    /// `HELLO name`.
    pub fn send_raw_to(&self, name: &str, bytes: &[u8]) {
        for c in self.conns.lock().unwrap().iter() {
            if *c.name.lock().unwrap() == name {
                c.push(bytes.to_vec());
            }
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Stops: the listener and every connection close, the socket goes.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.close();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for BusServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn fan_out(conns: &Mutex<Vec<Arc<Conn>>>, from: u64, topic: &str, body: &Value) {
    let mut env = Map::new();
    env.insert("v".into(), json!(1));
    env.insert("id".into(), json!(ttp_engine::bus::new_id()));
    env.insert("topic".into(), json!(topic));
    env.insert(
        "type".into(),
        truthy(body.get("type")).cloned().unwrap_or(json!("")),
    );
    env.insert("ts".into(), json!(now()));
    env.insert(
        "payload".into(),
        truthy(body.get("payload")).cloned().unwrap_or(json!({})),
    );
    let frame = Frame::json(Verb::Evt, topic, &Value::Object(env)).encode();
    for c in conns.lock().unwrap().iter() {
        if c.id == from {
            continue;
        }
        let wants = c
            .patterns
            .lock()
            .unwrap()
            .iter()
            .any(|p| topic_matches(p, topic));
        if wants {
            c.push(frame.clone());
        }
    }
}

fn serve(mut stream: UnixStream, conn: Arc<Conn>, conns: Arc<Mutex<Vec<Arc<Conn>>>>) {
    while let Ok(Some(frame)) = read_frame(&mut stream) {
        match frame.verb {
            Verb::Hello => *conn.name.lock().unwrap() = frame.arg,
            Verb::Sub if !frame.arg.is_empty() => {
                conn.patterns.lock().unwrap().insert(frame.arg);
            }
            Verb::Unsub => {
                conn.patterns.lock().unwrap().remove(&frame.arg);
            }
            Verb::Pub if !frame.arg.is_empty() => {
                let body = if frame.body.is_empty() {
                    json!({})
                } else {
                    match serde_json::from_slice::<Value>(&frame.body) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => break,
                    }
                };
                fan_out(&conns, conn.id, &frame.arg, &body);
            }
            Verb::Bye => break,
            _ => break,
        }
    }
    conn.close();
    let _ = stream.shutdown(std::net::Shutdown::Both);
    conns.lock().unwrap().retain(|c| c.id != conn.id);
}

/// A bus client for the tests: publishes, and collects what it receives.
pub struct Client {
    stream: UnixStream,
    received: Arc<Mutex<Vec<(String, Value, std::time::Instant)>>>,
}

impl Client {
    pub fn connect(path: &Path, patterns: &[&str]) -> Client {
        let mut stream = UnixStream::connect(path).unwrap();
        stream
            .write_all(&Frame::new(Verb::Hello, "test", Vec::new()).encode())
            .unwrap();
        for p in patterns {
            stream
                .write_all(&Frame::new(Verb::Sub, p, Vec::new()).encode())
                .unwrap();
        }
        let received: Arc<Mutex<Vec<(String, Value, std::time::Instant)>>> = Arc::default();
        {
            let mut reader = stream.try_clone().unwrap();
            let received = received.clone();
            std::thread::spawn(move || {
                while let Ok(Some(f)) = read_frame(&mut reader) {
                    let body: Value = serde_json::from_slice(&f.body).unwrap_or(Value::Null);
                    received
                        .lock()
                        .unwrap()
                        .push((f.arg, body, std::time::Instant::now()));
                }
            });
        }
        // Let the server take the subscriptions in.
        std::thread::sleep(Duration::from_millis(50));
        Client { stream, received }
    }

    pub fn publish(&mut self, topic: &str, body: &Value) {
        self.stream
            .write_all(&Frame::json(Verb::Pub, topic, body).encode())
            .unwrap();
    }

    pub fn received(&self) -> Vec<(String, Value)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(t, b, _)| (t.clone(), b.clone()))
            .collect()
    }

    /// How many frames were received (without copying them: a copy holds
    /// the lock the reading thread needs).
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// What was received, with when.
    pub fn received_at(&self) -> Vec<(String, Value, std::time::Instant)> {
        self.received.lock().unwrap().clone()
    }
}
