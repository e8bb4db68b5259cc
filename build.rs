//! Build script: tells the DECNET compatibility tests whether `../shared`
//! (DECNET's rules, corpus and golden examples) is here.
//!
//! When it is absent the tests compiled with `cfg(shared_missing)` are
//! marked ignored, so `cargo test` lists them as ignored instead of passing
//! them. Under `CI=true` the flag is never set: a missing `../shared` then
//! fails those tests.
//!
//! Likewise `cfg(validators_missing)` when the reference validators' Python
//! (mitreattack-python, stix2-validator, pymisp in the venv `.ci/run`
//! makes at `target/ci-venv`, or `TTP_VALIDATORS_PYTHON`) is absent.

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
    println!("cargo::rustc-check-cfg=cfg(validators_missing)");
    println!("cargo::rerun-if-env-changed=TTP_VALIDATORS_PYTHON");
    let python = std::env::var_os("TTP_VALIDATORS_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python"));
    println!("cargo::rerun-if-changed={}", python.display());
    if !python.exists() && !ci {
        println!("cargo::rustc-cfg=validators_missing");
    }
}
