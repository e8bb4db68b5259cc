//! Writes the deterministic benchmark event mix as JSON lines:
//! `cargo run --release --example gen_mix -- 200000 > mix.jsonl`
//! (then `ttp bench --events mix.jsonl`).

use std::io::Write;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let seed: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(42);
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for ev in ttp_engine::bench::fixtures::event_mix(n, seed) {
        let line = serde_json::json!({
            "source_kind": ev.source_kind, "source_id": ev.source_id,
            "attacker_uuid": ev.attacker_uuid, "identity_uuid": ev.identity_uuid,
            "session_id": ev.session_id, "decky_id": ev.decky_id, "payload": ev.payload,
        });
        if writeln!(out, "{line}").is_err() {
            return;
        }
    }
}
