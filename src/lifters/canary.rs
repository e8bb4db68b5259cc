//! Canary fingerprint lifter (spec §5.3): browser canaries that caught an
//! automated or disguised client. Evidence is always exactly
//! `{metric, matched_signature}`.

use super::params;
use super::py::{as_int, get, int_str, is_true, or};
use crate::event::Payload;
use crate::rule::parse::Ctx;
use crate::tag::Evidence;
use crate::yaml::Node;
use serde_json::Value;

#[derive(Debug)]
pub enum Canary {
    Webdriver,
    /// `catalogues` empty means any string matches (as in DECNET).
    AutomationHash {
        catalogues: Vec<String>,
    },
    WebrtcLeak,
    TzLangMismatch,
    PlatformInconsistency,
}

impl Canary {
    pub fn compile(kind: &str, m: &Node, ctx: &mut Ctx) -> Option<Canary> {
        Some(match kind {
            "canary_webdriver" => Canary::Webdriver,
            "canary_automation_hash" => Canary::AutomationHash {
                catalogues: params::strings(m, "catalogues", ctx)?,
            },
            "canary_webrtc_leak" => Canary::WebrtcLeak,
            "canary_tz_lang_mismatch" => Canary::TzLangMismatch,
            "canary_platform_inconsistency" => Canary::PlatformInconsistency,
            _ => return None,
        })
    }

    /// The evidence when the rule fires.
    pub fn fire(&self, p: &Payload) -> Option<Evidence> {
        let (metric, signature): (&str, String) = match self {
            Canary::Webdriver => {
                if !is_true(get(p, "navigator_webdriver")) {
                    return None;
                }
                ("navigator_webdriver", "navigator.webdriver_true".into())
            }
            Canary::AutomationHash { catalogues } => {
                let m = or(get(p, "canvas_audio_hash_match"), get(p, "matched_tool")).as_str()?;
                if !catalogues.is_empty() && !catalogues.iter().any(|c| c == m) {
                    return None;
                }
                ("canvas_audio_hash", m.to_string())
            }
            Canary::WebrtcLeak => {
                if !is_true(get(p, "webrtc_geo_mismatch")) {
                    return None;
                }
                ("webrtc_geo_mismatch", "webrtc_private_vs_source_ip".into())
            }
            Canary::TzLangMismatch => {
                let zones = get(p, "tz_mismatch_zones");
                match int_str(zones).filter(|_| as_int(zones).is_some_and(|z| z >= 3)) {
                    Some(shown) => ("timezone_geo_mismatch", format!("tz_zones>={shown}")),
                    None if is_true(get(p, "lang_country_mismatch")) => {
                        ("language_country_mismatch", "lang_vs_source_country".into())
                    }
                    None => return None,
                }
            }
            Canary::PlatformInconsistency => {
                if is_true(get(p, "platform_ua_inconsistent")) {
                    (
                        "platform_ua_mismatch",
                        "navigator.platform_vs_userAgent".into(),
                    )
                } else if is_true(get(p, "ua_webgl_mismatch")) {
                    ("ua_webgl_mismatch", "userAgent_vs_webgl_renderer".into())
                } else {
                    return None;
                }
            }
        };
        let mut ev = Evidence::default();
        ev.insert("metric".into(), Value::String(metric.into()));
        ev.insert("matched_signature".into(), Value::String(signature));
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fire(c: &Canary, p: Value) -> Option<Value> {
        c.fire(&crate::event::payload(p).unwrap())
            .map(crate::tag::evidence_json)
    }

    #[test]
    fn automation_hash_catalogue_and_fallback() {
        let c = Canary::AutomationHash {
            catalogues: vec!["puppeteer".into()],
        };
        assert!(fire(&c, json!({"canvas_audio_hash_match": "puppeteer"})).is_some());
        assert!(fire(
            &c,
            json!({"canvas_audio_hash_match": "unknown", "matched_tool": "puppeteer"})
        )
        .is_none());
        assert!(fire(
            &c,
            json!({"canvas_audio_hash_match": "", "matched_tool": "puppeteer"})
        )
        .is_some());
        let any = Canary::AutomationHash { catalogues: vec![] };
        assert!(
            fire(&any, json!({"matched_tool": ""})).is_some(),
            "empty catalogue accepts \"\""
        );
    }

    #[test]
    fn tz_threshold_and_language_branch() {
        let c = Canary::TzLangMismatch;
        assert_eq!(
            fire(&c, json!({"tz_mismatch_zones": 3})),
            Some(json!({"metric": "timezone_geo_mismatch", "matched_signature": "tz_zones>=3"}))
        );
        assert!(fire(&c, json!({"tz_mismatch_zones": 2})).is_none());
        assert!(fire(&c, json!({"tz_mismatch_zones": true})).is_none());
        assert_eq!(
            fire(
                &c,
                json!({"tz_mismatch_zones": 1, "lang_country_mismatch": true})
            ),
            Some(
                json!({"metric": "language_country_mismatch", "matched_signature": "lang_vs_source_country"})
            )
        );
    }

    #[test]
    fn flags_must_be_true() {
        assert!(fire(&Canary::Webdriver, json!({"navigator_webdriver": 1})).is_none());
        assert!(fire(&Canary::WebrtcLeak, json!({"webrtc_geo_mismatch": true})).is_some());
        assert_eq!(
            fire(
                &Canary::PlatformInconsistency,
                json!({"ua_webgl_mismatch": true})
            ),
            Some(
                json!({"metric": "ua_webgl_mismatch", "matched_signature": "userAgent_vs_webgl_renderer"})
            )
        );
    }
}
