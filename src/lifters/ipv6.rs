//! IPv6 link-local leak lifter (spec §5.7): an `fe80:` address seen from an
//! attacker reveals its interface (and often its MAC).

use super::LifterFailed;
use crate::event::Payload;
use crate::tag::Evidence;
use serde_json::Value;

/// `payload.get(k, default)`: the default only when the key is absent.
fn get_or(p: &Payload, k: &str, default: &str) -> Value {
    p.get(k)
        .cloned()
        .unwrap_or_else(|| Value::String(default.into()))
}

fn truthy_or(a: Value, b: Value) -> Value {
    if super::py::truthy(&a) {
        a
    } else {
        b
    }
}

/// `Ok(None)`: no fire. `Err(LifterFailed)`: the address is not a string, which makes
/// DECNET's lifter raise (so it yields nothing for this event).
pub fn fire(p: &Payload) -> Result<Option<Evidence>, LifterFailed> {
    let addr = truthy_or(get_or(p, "addr", ""), get_or(p, "src_ip", ""));
    let Value::String(text) = &addr else {
        return Err(LifterFailed);
    };
    if !text.to_lowercase().starts_with("fe80:") {
        return Ok(None);
    }
    let mut ev = Evidence::default();
    ev.insert("addr".into(), addr.clone());
    ev.insert("mac_oui".into(), get_or(p, "mac_oui", ""));
    ev.insert("iid_kind".into(), get_or(p, "iid_kind", "unknown"));
    ev.insert("vector".into(), get_or(p, "vector", ""));
    ev.insert("on_iface".into(), get_or(p, "on_iface", ""));
    ev.insert(
        "attacker_v4".into(),
        truthy_or(get_or(p, "attacker_v4", ""), get_or(p, "attacker_ip", "")),
    );
    ev.insert("observed_at".into(), get_or(p, "observed_at", ""));
    Ok(Some(ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(p: Value) -> Result<Option<Value>, LifterFailed> {
        fire(&crate::event::payload(p).unwrap()).map(|o| o.map(crate::tag::evidence_json))
    }

    #[test]
    fn absent_null_and_wrong_types() {
        assert_eq!(
            run(json!({"addr": null, "src_ip": "fe80::1", "mac_oui": null})),
            Ok(Some(
                json!({"addr":"fe80::1","mac_oui":null,"iid_kind":"unknown","vector":"","on_iface":"","attacker_v4":"","observed_at":""})
            ))
        );
        assert_eq!(run(json!({"addr": 5})), Err(LifterFailed));
        assert_eq!(
            run(json!({"addr": null})),
            Ok(None),
            "absent src_ip falls back to \"\""
        );
        assert_eq!(
            run(json!({"addr": null, "src_ip": null})),
            Err(LifterFailed)
        );
        assert_eq!(run(json!({})), Ok(None));
        assert_eq!(run(json!({"addr": "2001:db8::1"})), Ok(None));
    }
}
