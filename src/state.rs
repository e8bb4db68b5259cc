//! Operator rule state (spec §8, with one deliberate difference): `enabled`,
//! `disabled` or `clipped` (a confidence ceiling), optionally until a time.
//!
//! DECNET treats a state whose `expires_at` has passed as "rule inactive".
//! Here an expired state is over: the rule is back to enabled (the daemon
//! also deletes the row and logs the change).

use serde::Serialize;
use std::collections::HashMap;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    Enabled,
    Disabled,
    Clipped,
}

impl StateKind {
    /// DECNET stores free text; anything unknown behaves like `enabled`.
    pub fn parse(s: &str) -> StateKind {
        match s {
            "disabled" => StateKind::Disabled,
            "clipped" => StateKind::Clipped,
            _ => StateKind::Enabled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Enabled => "enabled",
            StateKind::Disabled => "disabled",
            StateKind::Clipped => "clipped",
        }
    }
}

/// One row of `ttp_rule_state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleState {
    pub rule_id: String,
    pub state: StateKind,
    pub confidence_max: Option<f64>,
    /// Unix seconds (UTC).
    pub expires_at: Option<i64>,
    pub reason: Option<String>,
    pub set_by: Option<String>,
    pub set_at: String,
}

impl RuleState {
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t < now)
    }
}

/// What a state does to one evaluation of a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    /// The rule does not fire.
    Off,
    /// The rule fires; confidences are capped at the ceiling when set.
    On { ceiling: Option<f64> },
}

impl Gate {
    /// DECNET's `apply_ceiling`: only lowers.
    pub fn apply(self, confidence: f64) -> f64 {
        match self {
            Gate::On { ceiling: Some(c) } => confidence.min(c),
            _ => confidence,
        }
    }
}

/// The states of all rules at one moment (immutable; part of a snapshot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleStates {
    by_rule: HashMap<String, RuleState>,
}

impl RuleStates {
    pub fn new(states: impl IntoIterator<Item = RuleState>) -> RuleStates {
        RuleStates {
            by_rule: states.into_iter().map(|s| (s.rule_id.clone(), s)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_rule.is_empty()
    }

    pub fn get(&self, rule_id: &str) -> Option<&RuleState> {
        self.by_rule.get(rule_id)
    }

    /// The gate of `rule_id` at `now` (Unix seconds).
    pub fn gate(&self, rule_id: &str, now: i64) -> Gate {
        // Most of the time no rule has a state: no hashing of the id.
        if self.by_rule.is_empty() {
            return Gate::On { ceiling: None };
        }
        let Some(s) = self.by_rule.get(rule_id) else {
            return Gate::On { ceiling: None };
        };
        if s.expired(now) {
            return Gate::On { ceiling: None };
        }
        match s.state {
            StateKind::Disabled => Gate::Off,
            StateKind::Clipped => Gate::On {
                ceiling: s.confidence_max.filter(|c| *c < 1.0),
            },
            StateKind::Enabled => Gate::On { ceiling: None },
        }
    }

    /// Rule ids whose state has expired at `now`.
    pub fn expired(&self, now: i64) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_rule
            .values()
            .filter(|s| s.expired(now))
            .map(|s| s.rule_id.clone())
            .collect();
        v.sort();
        v
    }
}

/// The current time in Unix seconds.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: StateKind, max: Option<f64>, exp: Option<i64>) -> RuleState {
        RuleState {
            rule_id: "R".into(),
            state,
            confidence_max: max,
            expires_at: exp,
            reason: None,
            set_by: None,
            set_at: String::new(),
        }
    }

    #[test]
    fn gates_follow_state_ceiling_and_expiry() {
        let now = 1_000;
        let g = |s| RuleStates::new([s]).gate("R", now);
        assert_eq!(g(st(StateKind::Disabled, None, None)), Gate::Off);
        assert_eq!(
            g(st(StateKind::Disabled, None, Some(999))),
            Gate::On { ceiling: None },
            "expired: enabled again"
        );
        assert_eq!(
            g(st(StateKind::Disabled, None, Some(1_000))),
            Gate::Off,
            "expires strictly after"
        );
        assert_eq!(
            g(st(StateKind::Clipped, Some(0.5), None)),
            Gate::On { ceiling: Some(0.5) }
        );
        assert_eq!(
            g(st(StateKind::Clipped, Some(1.0), None)),
            Gate::On { ceiling: None }
        );
        assert_eq!(
            g(st(StateKind::Enabled, Some(0.2), None)),
            Gate::On { ceiling: None },
            "ceiling only when clipped"
        );
        assert_eq!(Gate::On { ceiling: Some(0.5) }.apply(0.595), 0.5);
        assert_eq!(Gate::On { ceiling: Some(0.5) }.apply(0.4), 0.4);
        assert_eq!(
            RuleStates::default().gate("X", now),
            Gate::On { ceiling: None }
        );
        assert_eq!(StateKind::parse("weird"), StateKind::Enabled);
    }
}
