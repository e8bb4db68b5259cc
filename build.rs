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
//! makes at `target/ci-venv`, or `TTP_VALIDATORS_PYTHON`) is absent, and
//! `cfg(browser_missing)` when the page's browser test lacks that venv
//! (with selenium), Debian's `chromium`, `chromedriver` and `firefox-esr`,
//! or the geckodriver `.ci/run` builds into `target/tools`.

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
    // The page's browser test: that Python with selenium, the browsers and
    // their WebDriver servers.
    println!("cargo::rustc-check-cfg=cfg(browser_missing)");
    let geckodriver = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/bin/geckodriver");
    let browser = [
        "/usr/bin/chromium",
        "/usr/bin/chromedriver",
        "/usr/bin/firefox-esr",
        geckodriver
            .to_str()
            .unwrap_or("target/tools/bin/geckodriver"),
    ];
    for b in browser {
        println!("cargo::rerun-if-changed={b}");
    }
    let installed = python
        .parent()
        .and_then(Path::parent)
        .map(|venv| venv.join(".installed"));
    if let Some(f) = &installed {
        println!("cargo::rerun-if-changed={}", f.display());
    }
    let selenium = installed
        .and_then(|f| std::fs::read_to_string(f).ok())
        .is_some_and(|s| s.contains("selenium"))
        || std::env::var_os("TTP_VALIDATORS_PYTHON").is_some();
    if !ci && (!python.exists() || !selenium || browser.iter().any(|b| !Path::new(b).exists())) {
        println!("cargo::rustc-cfg=browser_missing");
    }
}
