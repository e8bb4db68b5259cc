//! Intel lifter (spec §5.2, §6): threat-intel verdicts → techniques.
//!
//! The provider mappings (which signal points at which technique) live in
//! `data/intel/signals.tsv`; this module holds only the decision logic. The
//! predicate returns decisions `(technique, multiplier, extra)`; only the
//! rule's emits whose technique has a decision become tags.

use super::py::{float, get, int_str, is_int, is_num, is_true, or, py_int};
use crate::event::Payload;
use crate::tag::Evidence;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

const SIGNALS_TSV: &str = include_str!("../../data/intel/signals.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intel {
    AbuseIpdb,
    GreyNoise,
    Feodo,
    ThreatFox,
    /// No behaviour in DECNET: never fires.
    AggregateBump,
}

/// One mapped technique of a signal.
#[derive(Debug, Clone, PartialEq)]
struct Mapping {
    technique: String,
    min_score: Option<f64>,
}

/// provider → signal → techniques, in file order.
type Table = HashMap<String, HashMap<String, Vec<Mapping>>>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: Table = HashMap::new();
        for line in SIGNALS_TSV.lines() {
            if line.starts_with('#') || line.starts_with("provider\t") || line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 4 {
                continue;
            }
            let min_score = cols[3].parse::<f64>().ok();
            t.entry(cols[0].into())
                .or_default()
                .entry(cols[1].into())
                .or_default()
                .push(Mapping {
                    technique: cols[2].into(),
                    min_score,
                });
        }
        t
    })
}

fn techniques(provider: &str, signal: &str) -> &'static [Mapping] {
    table()
        .get(provider)
        .and_then(|p| p.get(signal))
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A technique the event points at, with its confidence multiplier and the
/// evidence to add.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub technique: String,
    pub multiplier: f64,
    pub extra: Evidence,
}

/// Ordered technique → value map (insertion order kept).
struct Ordered<T>(Vec<(String, T)>);

impl<T> Ordered<T> {
    fn entry(&mut self, k: &str, make: impl FnOnce() -> T) -> &mut T {
        let i = match self.0.iter().position(|(key, _)| key == k) {
            Some(i) => i,
            None => {
                self.0.push((k.to_string(), make()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
    fn contains(&self, k: &str) -> bool {
        self.0.iter().any(|(key, _)| key == k)
    }
}

fn strings_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.iter().filter(|x| x.is_string()).cloned().collect(),
        Value::String(s) if !s.is_empty() => vec![v.clone()],
        _ => Vec::new(),
    }
}

impl Intel {
    pub fn from_kind(kind: &str) -> Option<Intel> {
        Some(match kind {
            "intel_abuseipdb" => Intel::AbuseIpdb,
            "intel_greynoise" => Intel::GreyNoise,
            "intel_feodo" => Intel::Feodo,
            "intel_threatfox" => Intel::ThreatFox,
            "intel_aggregate_bump" => Intel::AggregateBump,
            _ => return None,
        })
    }

    pub fn decide(self, p: &Payload) -> Vec<Decision> {
        match self {
            Intel::AbuseIpdb => abuseipdb(p),
            Intel::GreyNoise => greynoise(p),
            Intel::Feodo => feodo(p),
            Intel::ThreatFox => threatfox(p),
            Intel::AggregateBump => Vec::new(),
        }
    }
}

fn abuseipdb(p: &Payload) -> Vec<Decision> {
    let score = get(p, "abuseipdb_score");
    if !is_num(score) {
        return Vec::new();
    }
    // `float(score)`: an integer beyond the float range raises, and the
    // lifter yields nothing.
    let Some(score_f) = float(score) else {
        return Vec::new();
    };
    let cats: Vec<&Value> = match or(get(p, "abuseipdb_categories"), get(p, "categories")) {
        Value::Array(a) if !a.is_empty() => a.iter().filter(|c| is_int(c)).collect(),
        _ => return Vec::new(),
    };
    let mut hits: Ordered<Vec<Value>> = Ordered(Vec::new());
    for cat in cats {
        // Booleans are integers to Python but name no category ("cat_True").
        if cat.is_boolean() {
            continue;
        }
        let Some(n) = int_str(cat) else { continue };
        for m in techniques("abuseipdb", &format!("cat_{n}")) {
            if m.min_score.is_none_or(|min| min <= score_f) {
                hits.entry(&m.technique, Vec::new).push(cat.clone());
            }
        }
    }
    // `int(score)`: exact for integers of any size, truncation toward zero
    // for floats; NaN and infinities raise.
    let Some(confidence_score) = py_int(score) else {
        return Vec::new();
    };
    hits.0
        .into_iter()
        .map(|(technique, cats)| {
            let mut extra = Evidence::default();
            extra.insert("abuseipdb_categories".into(), Value::Array(cats));
            extra.insert("abuse_confidence_score".into(), confidence_score.clone());
            Decision {
                technique,
                multiplier: score_f / 100.0,
                extra,
            }
        })
        .collect()
}

fn greynoise(p: &Payload) -> Vec<Decision> {
    let cls = get(p, "greynoise_classification");
    let tags = or(get(p, "greynoise_tags"), &Value::Null);
    let mut hits: Ordered<(f64, Vec<Value>)> = Ordered(Vec::new());
    let add = |hits: &mut Ordered<(f64, Vec<Value>)>, tech: &str, mult: f64, signal: &str| {
        let e = hits.entry(tech, || (mult, Vec::new()));
        e.0 = e.0.max(mult);
        e.1.push(Value::String(signal.into()));
    };
    if cls.as_str() == Some("scanner") {
        for m in techniques("greynoise-classification", "scanner") {
            add(&mut hits, &m.technique, 1.0, "scanner");
        }
    }
    if let Value::Array(tags) = tags {
        for tag in tags.iter().filter_map(Value::as_str) {
            for m in techniques("greynoise", tag) {
                add(&mut hits, &m.technique, 1.0, tag);
            }
        }
    }
    // A bare "malicious" verdict counts at half strength, unless a tag
    // already pointed at command and control.
    if cls.as_str() == Some("malicious") && !hits.contains("T1071") {
        add(&mut hits, "T1071", 0.5, "malicious");
    }
    hits.0
        .into_iter()
        .map(|(technique, (multiplier, signals))| {
            let mut extra = Evidence::default();
            extra.insert("greynoise_classification".into(), cls.clone());
            extra.insert("greynoise_tags".into(), Value::Array(signals));
            Decision {
                technique,
                multiplier,
                extra,
            }
        })
        .collect()
}

fn feodo(p: &Payload) -> Vec<Decision> {
    if !is_true(get(p, "feodo_listed")) {
        return Vec::new();
    }
    let family = or(get(p, "feodo_malware_family"), get(p, "malware_family"));
    let mut extra = Evidence::default();
    extra.insert("feodo_listed".into(), Value::Bool(true));
    if let Some(f) = family.as_str().filter(|s| !s.is_empty()) {
        extra.insert("malware_family".into(), Value::String(f.into()));
    }
    techniques("feodo", "listed")
        .iter()
        .map(|m| Decision {
            technique: m.technique.clone(),
            multiplier: 1.0,
            extra: extra.clone(),
        })
        .collect()
}

fn threatfox(p: &Payload) -> Vec<Decision> {
    let types = strings_of(or(get(p, "threatfox_threat_types"), get(p, "threat_type")));
    let mut hits: Ordered<Vec<Value>> = Ordered(Vec::new());
    for t in &types {
        let Some(name) = t.as_str() else { continue };
        for m in techniques("threatfox", name) {
            hits.entry(&m.technique, Vec::new).push(t.clone());
        }
    }
    let families = strings_of(or(
        get(p, "threatfox_malware_families"),
        get(p, "malware_family"),
    ));
    let iocs = match get(p, "threatfox_ioc_types") {
        Value::Array(a) => a.iter().filter(|x| x.is_string()).cloned().collect(),
        _ => Vec::new(),
    };
    hits.0
        .into_iter()
        .map(|(technique, types)| {
            let mut extra = Evidence::default();
            extra.insert("threat_types".into(), Value::Array(types));
            if !families.is_empty() {
                extra.insert("malware_families".into(), Value::Array(families.clone()));
            }
            if !iocs.is_empty() {
                extra.insert("ioc_types".into(), Value::Array(iocs.clone()));
            }
            Decision {
                technique,
                multiplier: 1.0,
                extra,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decide(k: Intel, p: Value) -> Vec<(String, f64, Value)> {
        k.decide(&crate::event::payload(p).unwrap())
            .into_iter()
            .map(|d| {
                (
                    d.technique,
                    d.multiplier,
                    crate::tag::evidence_json(d.extra),
                )
            })
            .collect()
    }

    #[test]
    fn the_mapping_file_loads() {
        assert_eq!(techniques("abuseipdb", "cat_14").len(), 2);
        assert_eq!(techniques("abuseipdb", "cat_11")[1].min_score, Some(80.0));
        assert!(techniques("abuseipdb", "cat_4").is_empty());
    }

    #[test]
    fn abuseipdb_gate_at_below_above() {
        let at = decide(
            Intel::AbuseIpdb,
            json!({"abuseipdb_score": 80, "abuseipdb_categories": [11]}),
        );
        assert_eq!(
            at.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
            vec!["T1496", "T1566"]
        );
        let below = decide(
            Intel::AbuseIpdb,
            json!({"abuseipdb_score": 79.9, "abuseipdb_categories": [11]}),
        );
        assert_eq!(below.len(), 1);
        assert_eq!(below[0].2["abuse_confidence_score"], json!(79));
        assert!(decide(
            Intel::AbuseIpdb,
            json!({"abuseipdb_score": "85", "abuseipdb_categories": [18]})
        )
        .is_empty());
        assert!(decide(
            Intel::AbuseIpdb,
            json!({"abuseipdb_score": 85, "abuseipdb_categories": [true]})
        )
        .is_empty());
        let fallback = decide(
            Intel::AbuseIpdb,
            json!({"abuseipdb_score": true, "abuseipdb_categories": [], "categories": [18, 18, true]}),
        );
        assert_eq!(fallback[0].1, 0.01);
        assert_eq!(
            fallback[0].2,
            json!({"abuseipdb_categories": [18, 18], "abuse_confidence_score": 1})
        );
    }

    #[test]
    fn greynoise_lanes() {
        let d = decide(
            Intel::GreyNoise,
            json!({"greynoise_classification": "malicious", "greynoise_tags": ["cobalt_strike"]}),
        );
        assert_eq!(
            d.len(),
            2,
            "no extra malicious lane once T1071 is triggered: {d:?}"
        );
        assert_eq!(d[0].2["greynoise_tags"], json!(["cobalt_strike"]));
        assert!(decide(
            Intel::GreyNoise,
            json!({"greynoise_classification": "Malicious"})
        )
        .is_empty());
        assert!(decide(
            Intel::GreyNoise,
            json!({"greynoise_classification": "benign"})
        )
        .is_empty());
    }

    #[test]
    fn greynoise_scanner_is_a_verdict_not_a_tag() {
        let d = decide(
            Intel::GreyNoise,
            json!({"greynoise_classification": "scanner"}),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "T1595");
        assert_eq!(d[0].2["greynoise_tags"], json!(["scanner"]));
        // A provider tag spelled like the table's verdict row maps to nothing.
        for tag in ["classification:scanner", "scanner"] {
            assert!(
                decide(Intel::GreyNoise, json!({"greynoise_tags": [tag]})).is_empty(),
                "{tag}"
            );
        }
    }

    #[test]
    fn abuseipdb_score_of_any_size() {
        let p = |t: &str| {
            let v = crate::pyjson::parse(
                format!(r#"{{"abuseipdb_score": {t}, "abuseipdb_categories": [18]}}"#).as_bytes(),
            )
            .unwrap();
            decide(Intel::AbuseIpdb, v)
        };
        let d = p("9223372036854775808");
        assert_eq!(d.len(), 1);
        assert_eq!(
            crate::pyjson::dumps(&d[0].2["abuse_confidence_score"]),
            "9223372036854775808"
        );
        assert_eq!(
            crate::pyjson::dumps(&p("18446744073709551617")[0].2["abuse_confidence_score"]),
            "18446744073709551617"
        );
        // float(score) overflows (Python raises): nothing.
        assert!(p(&"9".repeat(400)).is_empty());
        // int(NaN) and int(inf) raise: nothing.
        assert!(p("NaN").is_empty());
        assert!(p("1e999").is_empty());
    }

    #[test]
    fn threatfox_ignores_ioc_types_as_drivers() {
        assert!(decide(Intel::ThreatFox, json!({"ioc_type": "botnet_cc"})).is_empty());
        let d = decide(Intel::ThreatFox, json!({"threat_type": "payload"}));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].2, json!({"threat_types": ["payload"]}));
    }
}
