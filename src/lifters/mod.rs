//! DECNET's lifters (spec §5): the taggers other than the generic engine.
//!
//! Each `lifter:*` kind compiles its rule's `match` parameters at load time
//! into typed settings ([`LifterRule`]). At tag time [`run`] evaluates one
//! lifter's rules for one event with DECNET's skeleton: evidence from
//! `evidence_fields` updated with the predicate's extra (canary, email, IPv6
//! and intel build theirs differently), every emit becomes a tag.
//!
//! A lifter whose evaluation "raises" in DECNET (an IPv6 address that is not a
//! string, an identity event without `identity_uuid`) yields no tags for that
//! event, and the other taggers are unaffected.

pub mod behavioral;
pub mod canary;
pub mod credential;
pub mod email;
pub mod intel;
pub mod ipv6;
pub mod params;
pub mod py;

use crate::event::{Payload, TaggerEvent};
use crate::lifter::Lifter;
use crate::rule::parse::Ctx;
use crate::rule::{Matcher, Rule};
use crate::state::Gate;
use crate::tag::{build_tag, field_evidence, Evidence, Tag, TagConfig, TagSource};
use crate::yaml::Node;
use std::sync::Arc;

/// A `lifter:*` rule's compiled settings.
#[derive(Debug)]
pub enum LifterRule {
    Behavioral(behavioral::Behavioral),
    Credential(credential::Credential),
    Canary(canary::Canary),
    Email(email::Email),
    Intel(intel::Intel),
    Ipv6Leak,
    /// `lifter:c2_fingerprint`: no behaviour in DECNET, never fires.
    Inert,
}

impl LifterRule {
    /// Compiles the parameters of a known `lifter:*` kind.
    pub fn compile(kind: &str, m: &Node, ctx: &mut Ctx) -> Option<LifterRule> {
        let name = kind.strip_prefix("lifter:")?;
        if let Some(i) = intel::Intel::from_kind(name) {
            return Some(LifterRule::Intel(i));
        }
        Some(match name {
            "ipv6_link_local_leak" => LifterRule::Ipv6Leak,
            "c2_fingerprint" => LifterRule::Inert,
            n if n.starts_with("behavioral_") => {
                LifterRule::Behavioral(behavioral::Behavioral::compile(n, m, ctx)?)
            }
            n if n.starts_with("credential_") || n.starts_with("identity_") => {
                LifterRule::Credential(credential::Credential::compile(n, m, ctx)?)
            }
            n if n.starts_with("canary_") => {
                LifterRule::Canary(canary::Canary::compile(n, m, ctx)?)
            }
            n if n.starts_with("email_") => LifterRule::Email(email::Email::compile(n, m, ctx)?),
            _ => return None,
        })
    }
}

impl LifterRule {
    /// Whether the rule's predicate accepts the payload (no tags built; used
    /// by `ttp bench` to time rules one by one).
    pub fn fires(&self, p: &Payload) -> bool {
        match self {
            LifterRule::Behavioral(b) => b.fire(p).is_some(),
            LifterRule::Credential(c) => c.fire(p).is_some(),
            LifterRule::Canary(c) => c.fire(p).is_some(),
            LifterRule::Email(e) => e.fire(p).is_some(),
            LifterRule::Intel(i) => !i.decide(p).is_empty(),
            LifterRule::Ipv6Leak => matches!(ipv6::fire(p), Ok(Some(_))),
            LifterRule::Inert => false,
        }
    }
}

/// `dict.update`: existing keys keep their place and take the new value.
fn update(ev: &mut Evidence, extra: Evidence) {
    for (k, v) in extra {
        ev.insert(k, v);
    }
}

/// The lifter could not evaluate the event (DECNET's tolerated exception):
/// it yields no tags for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifterFailed;

/// Evaluates `rules` (all owned by `lifter`, in index order) on one event,
/// appending the tags to `out`. On failure nothing is appended.
pub fn run<'a>(
    lifter: Lifter,
    rules: impl IntoIterator<Item = &'a Arc<Rule>>,
    event: &TaggerEvent,
    config: &TagConfig,
    gate: &dyn Fn(&str) -> Gate,
    created_at: &str,
    out: &mut Vec<Tag>,
) -> Result<u64, LifterFailed> {
    let p = &event.payload;
    let mut tags = Vec::new();
    let mut evaluated = 0;
    let mut email_base: Option<Evidence> = None;
    let mut body_hash = email::BodyHash::default();
    // The identity lifter tags the event as if it had no attacker_uuid;
    // with no identity_uuid left, building its tags fails.
    let tag_event = if lifter == Lifter::Identity {
        TagSource::without_attacker(event)
    } else {
        TagSource::of(event)
    };
    for rule in rules {
        let Matcher::Lifter(settings) = &rule.matcher else {
            continue;
        };
        let gate = gate(&rule.rule_id);
        if gate == Gate::Off {
            continue;
        }
        evaluated += 1;
        let emit_all = |tags: &mut Vec<Tag>, evidence: Evidence| {
            let evidence = Arc::new(evidence);
            for emit in &rule.emits {
                tags.push(build_tag(
                    tag_event,
                    rule,
                    emit,
                    evidence.clone(),
                    gate.apply(emit.confidence),
                    config,
                    created_at,
                ));
            }
        };
        match settings {
            LifterRule::Behavioral(b) => {
                if let Some(extra) = b.fire(p) {
                    let mut ev = field_evidence(rule, p);
                    update(&mut ev, extra);
                    emit_all(&mut tags, ev);
                }
            }
            LifterRule::Credential(c) => {
                if let Some(extra) = c.fire(p) {
                    if lifter == Lifter::Identity && event.identity_uuid.is_none() {
                        return Err(LifterFailed);
                    }
                    let mut ev = field_evidence(rule, p);
                    update(&mut ev, extra);
                    emit_all(&mut tags, ev);
                }
            }
            LifterRule::Canary(c) => {
                if let Some(ev) = c.fire(p) {
                    emit_all(&mut tags, ev);
                }
            }
            LifterRule::Email(e) => {
                if let Some(extra) = e.fire(p) {
                    let base = email_base.get_or_insert_with(|| email::base_evidence(p));
                    emit_all(&mut tags, email::evidence(base, extra, p, &mut body_hash));
                }
            }
            LifterRule::Ipv6Leak => {
                if let Some(ev) = ipv6::fire(p)? {
                    emit_all(&mut tags, ev);
                }
            }
            LifterRule::Intel(kind) => {
                let decisions = kind.decide(p);
                if decisions.is_empty() {
                    continue;
                }
                let base = field_evidence(rule, p);
                for emit in &rule.emits {
                    // The last decision for a technique wins.
                    let Some(d) = decisions
                        .iter()
                        .rev()
                        .find(|d| d.technique == emit.technique_id)
                    else {
                        continue;
                    };
                    let mut ev = base.clone();
                    update(&mut ev, d.extra.clone());
                    let mut tag = build_tag(
                        tag_event,
                        rule,
                        emit,
                        Arc::new(ev),
                        gate.apply(emit.confidence * d.multiplier),
                        config,
                        created_at,
                    );
                    // DECNET's intel path never sets mitre_url.
                    tag.mitre_url = None;
                    tags.push(tag);
                }
            }
            LifterRule::Inert => {}
        }
    }
    out.extend(tags);
    Ok(evaluated)
}
