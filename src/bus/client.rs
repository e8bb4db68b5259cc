//! A bus client on tokio: connects to the socket, says `HELLO`, subscribes,
//! hands received events to a bounded queue (reading pauses while it is
//! full), publishes what it is given, sends a heartbeat, and reconnects
//! with capped exponential backoff whenever the bus goes away (DECNET's
//! client never does, §5 Q4), subscribing again each time.

use super::{Envelope, Frame, FrameError, Verb, MAX_BODY_BYTES, MAX_HEADER_BYTES};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

/// How a client connects and what it listens to.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub socket: PathBuf,
    /// The `HELLO` name and the heartbeat's worker name (`ttp`).
    pub name: String,
    pub subscriptions: Vec<String>,
    /// Heartbeat period (DECNET's workers: 30 s).
    pub heartbeat: Duration,
    /// The longest pause between two connection attempts.
    pub max_backoff: Duration,
}

/// What the client shares with the rest of the process.
#[derive(Debug, Default)]
pub struct ClientState {
    pub connected: AtomicBool,
    /// Events waiting in the queue to the tagger.
    pub queue_depth: Arc<AtomicUsize>,
    /// Connections made so far.
    pub connections: AtomicUsize,
}

/// Reads one frame from an async stream (same rules as
/// [`super::read_frame`]). `Ok(None)` is a clean end before a frame.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> Result<Option<Frame>, FrameError> {
    let mut header = Vec::with_capacity(64);
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            if header.is_empty() {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                read: header.len(),
                expected: header.len() + 1,
            });
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        header.extend_from_slice(&available[..take]);
        r.consume(take);
        if header.len() > 64 * 1024 {
            return Err(FrameError::HeaderUnterminated);
        }
        if done {
            break;
        }
    }
    if header.len() > MAX_HEADER_BYTES {
        return Err(FrameError::HeaderTooLong(header.len()));
    }
    let (verb, arg) = super::parse_header(&header)?;
    let mut len = [0u8; 4];
    read_exact(r, &mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY_BYTES {
        return Err(FrameError::BodyTooLong(len));
    }
    let mut body = vec![0u8; len];
    read_exact(r, &mut body).await?;
    Ok(Some(Frame { verb, arg, body }))
}

async fn read_exact<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                read: got,
                expected: buf.len(),
            });
        }
        got += n;
    }
    Ok(())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The heartbeat's payload: DECNET's `{"worker", "ts"}` plus the
/// connection state and the queue depth.
fn heartbeat(config: &ClientConfig, state: &ClientState) -> Frame {
    let mut p = Map::new();
    p.insert("worker".into(), Value::String(config.name.clone()));
    p.insert("ts".into(), Value::from(now()));
    p.insert("bus".into(), Value::String("connected".into()));
    p.insert(
        "queue_depth".into(),
        Value::from(state.queue_depth.load(Ordering::Relaxed) as u64),
    );
    Envelope::publish_frame(
        &format!("system.{}.health", config.name),
        "health",
        Value::Object(p),
    )
}

/// Runs the client until `stop` turns true, then until `outgoing` is closed
/// (what is still to publish goes out), then says `BYE`. Received events go
/// to `incoming`; the client drops its sender when it stops reading.
pub async fn run(
    config: ClientConfig,
    state: Arc<ClientState>,
    incoming: mpsc::Sender<Envelope>,
    mut outgoing: mpsc::Receiver<Frame>,
    mut stop: watch::Receiver<bool>,
) {
    let mut incoming = Some(incoming);
    let mut backoff = Duration::from_millis(50);
    let mut announced_down = false;
    loop {
        let stopping = *stop.borrow();
        if stopping && incoming.is_some() {
            incoming = None;
        }
        let stream = match UnixStream::connect(&config.socket).await {
            Ok(s) => s,
            Err(e) => {
                if stopping {
                    // Nowhere to publish the rest: it is dropped, as DECNET's
                    // client drops publishes on a closed bus.
                    outgoing.close();
                    while outgoing.recv().await.is_some() {}
                    return;
                }
                if !announced_down {
                    tracing::warn!(
                        socket = %config.socket.display(),
                        "bus unavailable: {e}; retrying (at most every {:?})",
                        config.max_backoff
                    );
                    announced_down = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    changed = stop.changed() => {
                        if changed.is_err() {
                            // No one can stop us any more: stop now.
                            outgoing.close();
                            while outgoing.recv().await.is_some() {}
                            return;
                        }
                    }
                }
                backoff = (backoff * 2).min(config.max_backoff);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        announced_down = false;
        state.connected.store(true, Ordering::Relaxed);
        state.connections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(socket = %config.socket.display(), "bus connected");
        let ended = session(
            &config,
            &state,
            stream,
            &mut incoming,
            &mut outgoing,
            &mut stop,
        )
        .await;
        state.connected.store(false, Ordering::Relaxed);
        match ended {
            Ended::Done => return,
            Ended::Lost(why) => tracing::warn!("bus disconnected: {why}; reconnecting"),
        }
    }
}

enum Ended {
    Done,
    Lost(String),
}

async fn session(
    config: &ClientConfig,
    state: &Arc<ClientState>,
    stream: UnixStream,
    incoming: &mut Option<mpsc::Sender<Envelope>>,
    outgoing: &mut mpsc::Receiver<Frame>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let (read_half, mut write_half) = stream.into_split();
    // Writing, reading and heartbeats each have a task, so that none waits
    // for another: a full queue to the tagger pauses only the reading
    // (back-pressure), a slow bus only the writing. The reader is never
    // cancelled in the middle of a frame.
    let (wire_tx, mut wire_rx) = mpsc::channel::<Vec<u8>>(64);
    let mut writer = tokio::spawn(async move {
        while let Some(mut bytes) = wire_rx.recv().await {
            // What is queued goes out in one write.
            while let Ok(more) = wire_rx.try_recv() {
                bytes.extend(more);
            }
            write_half.write_all(&bytes).await?;
        }
        let _ = write_half.shutdown().await;
        Ok::<(), std::io::Error>(())
    });
    let mut hello = Frame::new(Verb::Hello, &config.name, Vec::new()).encode();
    for pattern in &config.subscriptions {
        hello.extend(Frame::new(Verb::Sub, pattern, Vec::new()).encode());
    }
    hello.extend(heartbeat(config, state).encode());
    if wire_tx.send(hello).await.is_err() {
        return Ended::Lost("the connection closed".into());
    }
    let heartbeats = {
        let (config, state, wire_tx) = (config.clone(), state.clone(), wire_tx.clone());
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(config.heartbeat);
            beat.tick().await;
            loop {
                beat.tick().await;
                // Skipped rather than queued behind a stuck connection.
                let _ = wire_tx.try_send(heartbeat(&config, &state).encode());
            }
        })
    };
    let mut reader = incoming.clone().map(|tx| {
        let (state, mut stop) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reader = BufReader::new(read_half);
            loop {
                let frame = tokio::select! {
                    f = read_frame(&mut reader) => f,
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                };
                match frame {
                    Ok(Some(f)) if f.verb == Verb::Evt => {
                        let env = match Envelope::from_frame(&f, now()) {
                            Ok(env) => env,
                            Err(e) => {
                                tracing::warn!(topic = %crate::text::line(&f.arg), "unreadable event: {}", crate::text::line(&e));
                                continue;
                            }
                        };
                        state.queue_depth.fetch_add(1, Ordering::Relaxed);
                        // Waits while the queue is full: reading pauses. An
                        // event read is always handed over, even when stopping.
                        if tx.send(env).await.is_err() {
                            state.queue_depth.fetch_sub(1, Ordering::Relaxed);
                            return Ok(());
                        }
                    }
                    Ok(Some(f)) => tracing::debug!("ignoring a {} frame from the bus", f.verb.as_str()),
                    Ok(None) => return Err("the bus closed the connection".to_string()),
                    Err(e) => return Err(format!("protocol error: {e}")),
                }
            }
        })
    });
    let ended = loop {
        tokio::select! {
            done = async {
                match reader.as_mut() {
                    Some(r) => r.await,
                    None => std::future::pending().await,
                }
            }, if reader.is_some() => {
                reader = None;
                match done {
                    Ok(Ok(())) => {
                        // Stopped reading (stop, or the tagger is gone):
                        // the tagger ends once it has what was read.
                        *incoming = None;
                    }
                    Ok(Err(why)) => break Ended::Lost(why),
                    Err(_) => break Ended::Lost("the reader failed".into()),
                }
            }
            out = outgoing.recv() => {
                match out {
                    Some(frame) => {
                        if wire_tx.send(frame.encode()).await.is_err() {
                            break Ended::Lost("the connection closed".into());
                        }
                    }
                    None => {
                        let _ = wire_tx.send(Frame::new(Verb::Bye, "", Vec::new()).encode()).await;
                        break Ended::Done;
                    }
                }
            }
            done = &mut writer => {
                let why = match done {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the connection closed".into(),
                };
                break Ended::Lost(why);
            }
        }
    };
    heartbeats.abort();
    if let Some(r) = reader {
        r.abort();
    }
    drop(wire_tx);
    if matches!(ended, Ended::Done) {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut writer).await;
    } else {
        writer.abort();
    }
    let _ = stop;
    ended
}
