//! Behavioral lifter (spec §5.1): session-level signals.

use super::params;
use super::py::{as_int, as_num, get, is_int, is_num, is_true, or, truthy};
use crate::event::Payload;
use crate::pyregex::PyRegex;
use crate::rule::parse::Ctx;
use crate::tag::Evidence;
use crate::yaml::Node;
use serde_json::Value;
use std::sync::OnceLock;

#[derive(Debug)]
pub enum Behavioral {
    Beaconing {
        min_interval_s: f64,
        max_jitter_pct: f64,
    },
    DataDestruction {
        patterns: Vec<PyRegex>,
    },
    RansomNote {
        keywords: Vec<String>,
        require_btc_or_xmr: bool,
    },
    ExfilOverWeb {
        min_payload_bytes: f64,
        request_threshold: i64,
    },
    DbMassRead {
        min_rows: i64,
        min_bytes: i64,
    },
    /// R0036 and R0037: a requested path matching one of the patterns.
    SensitivePath {
        paths: Vec<PyRegex>,
    },
    DockerEscape {
        signals: Vec<String>,
    },
    LlmnrPoisoning,
    TftpRouterConfig {
        patterns: Vec<PyRegex>,
    },
}

fn btc() -> Option<&'static PyRegex> {
    static RE: OnceLock<Option<PyRegex>> = OnceLock::new();
    RE.get_or_init(|| {
        PyRegex::new(r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[ac-hj-np-z02-9]{11,71})\b").ok()
    })
    .as_ref()
}

fn xmr() -> Option<&'static PyRegex> {
    static RE: OnceLock<Option<PyRegex>> = OnceLock::new();
    RE.get_or_init(|| PyRegex::new(r"\b4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}\b").ok())
        .as_ref()
}

fn first_match<'a>(patterns: &'a [PyRegex], text: &str) -> Option<&'a PyRegex> {
    patterns.iter().find(|r| r.is_match(text).unwrap_or(false))
}

impl Behavioral {
    pub fn compile(kind: &str, m: &Node, ctx: &mut Ctx) -> Option<Behavioral> {
        Some(match kind {
            "behavioral_beaconing" => Behavioral::Beaconing {
                min_interval_s: params::float(m, "min_interval_s", 0.0, ctx)?,
                max_jitter_pct: params::float(m, "max_jitter_pct", 1.0, ctx)?,
            },
            "behavioral_data_destruction" => Behavioral::DataDestruction {
                patterns: params::regexes(m, "patterns", ctx)?,
            },
            "behavioral_ransom_note" => Behavioral::RansomNote {
                keywords: params::strings(m, "payment_keywords", ctx)?,
                require_btc_or_xmr: params::boolean(m, "require_btc_or_xmr", false, ctx)?,
            },
            "behavioral_exfil_over_web" => Behavioral::ExfilOverWeb {
                min_payload_bytes: params::float(m, "min_payload_bytes", 0.0, ctx)?,
                request_threshold: params::int(m, "request_threshold", 0, ctx)?,
            },
            "behavioral_db_mass_read" => Behavioral::DbMassRead {
                min_rows: params::int(m, "min_rows", 0, ctx)?,
                min_bytes: params::int(m, "min_bytes", 0, ctx)?,
            },
            "behavioral_credentials_in_files" | "behavioral_k8s_sa_token" => {
                Behavioral::SensitivePath {
                    paths: params::regexes(m, "paths", ctx)?,
                }
            }
            "behavioral_docker_escape" => Behavioral::DockerEscape {
                signals: params::strings(m, "signals", ctx)?,
            },
            "behavioral_llmnr_poisoning" => Behavioral::LlmnrPoisoning,
            "behavioral_tftp_router_config" => Behavioral::TftpRouterConfig {
                patterns: params::regexes(m, "filename_patterns", ctx)?,
            },
            _ => return None,
        })
    }

    pub fn fire(&self, p: &Payload) -> Option<Evidence> {
        let mut extra = Evidence::default();
        match self {
            Behavioral::Beaconing {
                min_interval_s,
                max_jitter_pct,
            } => {
                let (i, j) = (get(p, "beacon_interval_s"), get(p, "beacon_jitter_pct"));
                if !(is_num(i) && is_num(j)) {
                    return None;
                }
                let (i, j) = (as_num(i)?, as_num(j)?);
                if i < *min_interval_s || j > *max_jitter_pct {
                    return None;
                }
            }
            Behavioral::DataDestruction { patterns } => {
                let hay = or(get(p, "op_text"), get(p, "command_text"));
                let text = if truthy(hay) { hay.as_str()? } else { "" };
                let hit = first_match(patterns, text)?;
                extra.insert("matched_op".into(), Value::String(hit.as_str().into()));
            }
            Behavioral::RansomNote {
                keywords,
                require_btc_or_xmr,
            } => {
                let v = or(get(p, "body_text"), get(p, "note_text"));
                let text = v.as_str().filter(|s| !s.is_empty())?;
                let lower = text.to_lowercase();
                let matched: Vec<Value> = keywords
                    .iter()
                    .filter(|k| lower.contains(&k.to_lowercase()))
                    .map(|k| Value::String(k.clone()))
                    .collect();
                if matched.is_empty() {
                    return None;
                }
                if *require_btc_or_xmr {
                    let addr = btc()
                        .and_then(|r| r.find(text))
                        .or_else(|| xmr().and_then(|r| r.find(text)))?;
                    extra.insert("btc_address".into(), Value::String(addr.into()));
                }
                extra.insert("matched_keywords".into(), Value::Array(matched));
            }
            Behavioral::ExfilOverWeb {
                min_payload_bytes,
                request_threshold,
            } => {
                let bytes = get(p, "bytes_out");
                let reqs = get(p, "request_count");
                let by_bytes =
                    is_num(bytes) && as_num(bytes).is_some_and(|b| b >= *min_payload_bytes);
                let by_reqs = is_int(reqs)
                    && as_int(reqs).is_some_and(|r| r >= i128::from(*request_threshold));
                if !(by_bytes || by_reqs) {
                    return None;
                }
            }
            Behavioral::DbMassRead {
                min_rows,
                min_bytes,
            } => {
                let rows = get(p, "rows_read");
                let bytes = get(p, "bytes_read");
                let by_rows =
                    is_int(rows) && as_int(rows).is_some_and(|r| r >= i128::from(*min_rows));
                let by_bytes =
                    is_num(bytes) && as_num(bytes).is_some_and(|b| b >= *min_bytes as f64);
                if !(by_rows || by_bytes) {
                    return None;
                }
            }
            Behavioral::SensitivePath { paths } => {
                let v = or(
                    or(get(p, "matched_path"), get(p, "request_path")),
                    get(p, "path"),
                );
                let path = v.as_str().filter(|s| !s.is_empty())?;
                first_match(paths, path)?;
                extra.insert("matched_path".into(), Value::String(path.into()));
            }
            Behavioral::DockerEscape { signals } => {
                let seen = get(p, "signals").as_array()?;
                let hit = signals
                    .iter()
                    .find(|s| seen.iter().any(|v| v.as_str() == Some(s.as_str())))?;
                extra.insert("matched_signal".into(), Value::String(hit.clone()));
            }
            Behavioral::LlmnrPoisoning => {
                let count = get(p, "llmnr_poison_count");
                let by_count = is_int(count) && as_int(count).is_some_and(|c| c >= 1);
                if !(is_true(get(p, "llmnr_poisoned")) || by_count) {
                    return None;
                }
            }
            Behavioral::TftpRouterConfig { patterns } => {
                let name = get(p, "tftp_filename").as_str().filter(|s| !s.is_empty())?;
                first_match(patterns, name)?;
            }
        }
        Some(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fire(b: &Behavioral, p: Value) -> Option<Value> {
        b.fire(&crate::event::payload(p).unwrap())
            .map(crate::tag::evidence_json)
    }

    fn res(ps: &[&str]) -> Vec<PyRegex> {
        ps.iter().map(|p| PyRegex::new(p).unwrap()).collect()
    }

    #[test]
    fn beaconing_bounds_are_inclusive() {
        let b = Behavioral::Beaconing {
            min_interval_s: 10.0,
            max_jitter_pct: 0.15,
        };
        assert!(fire(
            &b,
            json!({"beacon_interval_s": 10, "beacon_jitter_pct": 0.15})
        )
        .is_some());
        assert!(fire(
            &b,
            json!({"beacon_interval_s": 9.99, "beacon_jitter_pct": 0.1})
        )
        .is_none());
        assert!(fire(
            &b,
            json!({"beacon_interval_s": 60, "beacon_jitter_pct": 0.16})
        )
        .is_none());
        assert!(fire(
            &b,
            json!({"beacon_interval_s": "60", "beacon_jitter_pct": 0.1})
        )
        .is_none());
        assert!(fire(&b, json!({"beacon_interval_s": 60})).is_none());
    }

    #[test]
    fn data_destruction_uses_the_or_fallback() {
        let b = Behavioral::DataDestruction {
            patterns: res(&["FLUSHALL", r"DROP\s+DATABASE"]),
        };
        assert_eq!(
            fire(
                &b,
                json!({"op_text": "", "command_text": "redis-cli FLUSHALL"})
            ),
            Some(json!({"matched_op": "FLUSHALL"}))
        );
        assert!(fire(&b, json!({"op_text": "ls", "command_text": "FLUSHALL"})).is_none());
        assert!(
            fire(&b, json!({"op_text": 5, "command_text": "FLUSHALL"})).is_none(),
            "truthy non-string"
        );
        assert_eq!(
            fire(&b, json!({"command_text": "drop  DATABASE x"})),
            None,
            "case-sensitive"
        );
    }

    #[test]
    fn ransom_note_needs_keyword_and_address() {
        let b = Behavioral::RansomNote {
            keywords: vec!["bitcoin".into(), "BTC".into()],
            require_btc_or_xmr: true,
        };
        let note = "send 0.5 BTC to 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa to decrypt";
        assert_eq!(
            fire(&b, json!({"body_text": note})),
            Some(
                json!({"btc_address": "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "matched_keywords": ["BTC"]})
            )
        );
        assert!(fire(&b, json!({"body_text": "send btc please"})).is_none());
        let lax = Behavioral::RansomNote {
            keywords: vec!["btc".into()],
            require_btc_or_xmr: false,
        };
        assert_eq!(
            fire(&lax, json!({"note_text": "BTC"})),
            Some(json!({"matched_keywords": ["btc"]}))
        );
    }

    #[test]
    fn exfil_and_mass_read_thresholds() {
        let e = Behavioral::ExfilOverWeb {
            min_payload_bytes: 100.0,
            request_threshold: 50,
        };
        assert!(fire(&e, json!({"bytes_out": 100})).is_some());
        assert!(fire(&e, json!({"bytes_out": 99, "request_count": 50})).is_some());
        assert!(fire(&e, json!({"bytes_out": 99, "request_count": 49})).is_none());
        assert!(fire(&e, json!({"request_count": 50.0})).is_none());
        let d = Behavioral::DbMassRead {
            min_rows: 10,
            min_bytes: 1000,
        };
        assert!(fire(&d, json!({"rows_read": 10})).is_some());
        assert!(fire(&d, json!({"rows_read": 9, "bytes_read": 999.5})).is_none());
        assert!(fire(&d, json!({"bytes_read": 1000.0})).is_some());
    }

    #[test]
    fn paths_signals_llmnr_tftp() {
        let s = Behavioral::SensitivePath {
            paths: res(&[r"\.env"]),
        };
        assert_eq!(
            fire(&s, json!({"request_path": "/.env"})),
            Some(json!({"matched_path": "/.env"}))
        );
        assert!(fire(&s, json!({"path": ""})).is_none());
        let d = Behavioral::DockerEscape {
            signals: vec!["bind:/etc".into(), "privileged:true".into()],
        };
        assert_eq!(
            fire(&d, json!({"signals": ["privileged:true", "bind:/etc"]})),
            Some(json!({"matched_signal": "bind:/etc"}))
        );
        assert!(fire(&d, json!({"signals": "bind:/etc"})).is_none());
        let l = Behavioral::LlmnrPoisoning;
        assert!(fire(&l, json!({"llmnr_poison_count": true})).is_some());
        assert!(fire(&l, json!({"llmnr_poisoned": 1})).is_none());
        assert!(fire(&l, json!({"llmnr_poisoned": true})).is_some());
        let t = Behavioral::TftpRouterConfig {
            patterns: res(&[r".*\.cfg$"]),
        };
        assert!(fire(&t, json!({"tftp_filename": "x.cfg\n"})).is_some());
        assert!(fire(&t, json!({"tftp_filename": "x.cfgx"})).is_none());
    }
}
