//! Writes a generated pack of N regex rules into a directory:
//! `cargo run --release --example gen_pack -- 10000 /tmp/pack10k`
//! (for `ttp bench` and start-up measurements).

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "generated-rules".into()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(2);
    }
    for (name, yaml) in ttp_engine::bench::fixtures::regex_pack(n) {
        if let Err(e) = std::fs::write(dir.join(&name), yaml) {
            eprintln!("{name}: {e}");
            std::process::exit(2);
        }
    }
}
