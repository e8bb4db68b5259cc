//! Build script: tells the DECNET compatibility tests whether `../shared`
//! (DECNET's rules, corpus and golden examples) is here.
//!
//! When it is absent the tests compiled with `cfg(shared_missing)` are
//! marked ignored, so `cargo test` lists them as ignored instead of passing
//! them. Under `CI=true` the flag is never set: a missing `../shared` then
//! fails those tests.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_missing)");
    println!("cargo::rerun-if-env-changed=CI");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    println!("cargo::rerun-if-changed={}", shared.display());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !shared.join("decnet-rules").is_dir() && !ci {
        println!("cargo::rustc-cfg=shared_missing");
    }
}
