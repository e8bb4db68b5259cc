//! The analysts' page in real browsers: `tests/browser/page_test.py`
//! (selenium, from the venv `.ci/run` makes) drives Debian's headless
//! Chromium (with chromedriver) and Firefox ESR (with geckodriver, which
//! `.ci/run` builds from crates.io into `target/tools`) against a real
//! `ttp run --serve` fed real events into a real SQLite file, then a
//! 100,000-tag database under `ttp serve`. It checks the matrix's counts, the drill-down, the rule
//! text, a live update, a rule disabled from the page that stops tagging
//! within a second, the page weight (< 300 KB), and reports the time to
//! the first render. Screenshots of failures go to
//! `target/browser-screenshots/`.
//!
//! Without the browsers, their drivers or the venv this test is ignored
//! (and fails under `CI=true`, where `.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    std::env::var_os("TTP_VALIDATORS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-venv/bin/python"))
}

#[test]
#[cfg_attr(
    browser_missing,
    ignore = "needs chromium, chromedriver, firefox-esr, geckodriver and the venv with selenium (.ci/run installs them)"
)]
fn the_page_in_real_browsers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::TempDir::new().unwrap();
    let shots = root.join("target/browser-screenshots");
    let out = Command::new(python())
        .arg(root.join("tests/browser/page_test.py"))
        .arg("--ttp")
        .arg(env!("CARGO_BIN_EXE_ttp"))
        .arg("--work")
        .arg(work.path())
        .arg("--screenshots")
        .arg(&shots)
        .arg("--browsers")
        .arg("chromium,firefox")
        .arg("--geckodriver")
        .arg(root.join("target/tools/bin/geckodriver"))
        .output()
        .expect("run the browser test's Python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The figures, in the test's output (`cargo test -- --nocapture`).
    for line in stdout.lines().filter(|l| l.starts_with("page-metrics:")) {
        eprintln!("{line}");
    }
    assert!(
        out.status.success(),
        "the browser test failed:\n{stderr}\n{stdout}"
    );
    let metrics = stdout
        .lines()
        .find_map(|l| l.strip_prefix("page-metrics: "))
        .expect("the browser test reports its figures");
    let m: serde_json::Value = serde_json::from_str(metrics).unwrap();
    for browser in ["chromium", "firefox"] {
        let b = &m[browser];
        assert_eq!(b["big_tags"], 100_000, "{m}");
        assert!(b["page_weight_bytes"].as_u64().unwrap() < 300_000, "{m}");
        assert_eq!(b["first_render_ms"].as_array().unwrap().len(), 3, "{m}");
    }
}
