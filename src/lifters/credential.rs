//! Credential and identity lifters (spec §5.5, §5.6).

use super::params;
use super::py::{as_int, get, is_int, is_true, non_empty_str};
use crate::event::Payload;
use crate::rule::parse::Ctx;
use crate::tag::Evidence;
use crate::yaml::Node;
use serde_json::Value;

#[derive(Debug)]
pub enum Credential {
    /// R0001: `fail_count >= fail_threshold`.
    AuthBruteGeneric { threshold: i64 },
    /// R0002: many passwords tried for one user.
    PasswordGuessing { threshold: i64 },
    /// R0004: one credential hash used more than once.
    Reuse,
    /// R0005: a successful login, optionally after brute forcing.
    ValidAccountUse { require_prior_brute: bool },
    /// R0006: a login with a listed default pair.
    DefaultCredentials { pairs: Vec<(String, String)> },
    /// R0003 (identity lifter): one password across many accounts.
    PasswordSpraying { threshold: i64 },
}

impl Credential {
    pub fn compile(kind: &str, m: &Node, ctx: &mut Ctx) -> Option<Credential> {
        Some(match kind {
            "credential_auth_brute_generic" => Credential::AuthBruteGeneric {
                threshold: params::int(m, "fail_threshold", 5, ctx)?,
            },
            "credential_password_guessing" => Credential::PasswordGuessing {
                threshold: params::int(m, "pw_threshold", 5, ctx)?,
            },
            "credential_reuse" => Credential::Reuse,
            "credential_valid_account_use" => Credential::ValidAccountUse {
                require_prior_brute: params::boolean(m, "require_prior_brute", false, ctx)?,
            },
            "credential_default_credentials" => Credential::DefaultCredentials {
                pairs: params::pairs(m, "pairs", ctx)?,
            },
            "identity_password_spraying" => Credential::PasswordSpraying {
                threshold: params::int(m, "account_threshold", 1, ctx)?,
            },
            _ => return None,
        })
    }

    /// The extra evidence when the rule fires.
    pub fn fire(&self, p: &Payload) -> Option<Evidence> {
        let mut extra = Evidence::default();
        let at_least =
            |v: &Value, n: i64| is_int(v) && as_int(v).is_some_and(|x| x >= i128::from(n));
        let service = |extra: &mut Evidence| {
            if let Some(s) = non_empty_str(get(p, "service")) {
                extra.insert("service".into(), Value::String(s.into()));
            }
        };
        match self {
            Credential::AuthBruteGeneric { threshold } => {
                let count = get(p, "fail_count");
                if !at_least(count, *threshold) {
                    return None;
                }
                extra.insert("fail_count".into(), count.clone());
                service(&mut extra);
            }
            Credential::PasswordGuessing { threshold } => {
                let count = get(p, "password_count");
                let user = non_empty_str(get(p, "username"))?;
                if !at_least(count, *threshold) {
                    return None;
                }
                extra.insert("username".into(), Value::String(user.into()));
                extra.insert("password_count".into(), count.clone());
            }
            Credential::Reuse => {
                let hash = non_empty_str(get(p, "credential_hash"))?;
                let count = get(p, "reuse_count");
                if !at_least(count, 1) {
                    return None;
                }
                extra.insert("credential_hash".into(), Value::String(hash.into()));
                extra.insert("reuse_count".into(), count.clone());
            }
            Credential::ValidAccountUse {
                require_prior_brute,
            } => {
                if get(p, "result").as_str() != Some("success") {
                    return None;
                }
                if *require_prior_brute && !is_true(get(p, "prior_brute")) {
                    return None;
                }
                if let Some(u) = non_empty_str(get(p, "username")) {
                    extra.insert("username".into(), Value::String(u.into()));
                }
                service(&mut extra);
            }
            Credential::DefaultCredentials { pairs } => {
                let user = get(p, "username").as_str()?;
                let pass = get(p, "password").as_str()?;
                if !pairs.iter().any(|(u, pw)| u == user && pw == pass) {
                    return None;
                }
                extra.insert("username".into(), Value::String(user.into()));
                service(&mut extra);
            }
            Credential::PasswordSpraying { threshold } => {
                let hash = non_empty_str(get(p, "shared_password_hash"))?;
                let count = get(p, "account_count");
                if !at_least(count, *threshold) {
                    return None;
                }
                extra.insert("shared_password_hash".into(), Value::String(hash.into()));
                extra.insert("account_count".into(), count.clone());
            }
        }
        Some(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fire(c: &Credential, p: Value) -> Option<Value> {
        c.fire(&crate::event::payload(p).unwrap())
            .map(crate::tag::evidence_json)
    }

    #[test]
    fn brute_threshold_at_below_above_and_types() {
        let c = Credential::AuthBruteGeneric { threshold: 5 };
        assert_eq!(
            fire(&c, json!({"fail_count": 5, "service": "ssh"})),
            Some(json!({"fail_count": 5, "service": "ssh"}))
        );
        assert_eq!(fire(&c, json!({"fail_count": 4})), None);
        assert_eq!(
            fire(&c, json!({"fail_count": 6, "service": ""})),
            Some(json!({"fail_count": 6}))
        );
        assert_eq!(
            fire(&c, json!({"fail_count": 7.0})),
            None,
            "a float is not an int"
        );
        assert_eq!(fire(&c, json!({"fail_count": "9"})), None);
        assert_eq!(fire(&c, json!({"fail_count": null})), None);
        assert_eq!(fire(&c, json!({})), None);
        let one = Credential::AuthBruteGeneric { threshold: 1 };
        assert_eq!(
            fire(&one, json!({"fail_count": true})),
            Some(json!({"fail_count": true})),
            "bool is int"
        );
    }

    #[test]
    fn password_guessing_needs_a_user() {
        let c = Credential::PasswordGuessing { threshold: 5 };
        assert!(fire(&c, json!({"password_count": 5, "username": "root"})).is_some());
        assert!(fire(&c, json!({"password_count": 5, "username": ""})).is_none());
        assert!(fire(&c, json!({"password_count": 4, "username": "root"})).is_none());
    }

    #[test]
    fn reuse_needs_a_count_of_one() {
        let c = Credential::Reuse;
        assert!(fire(&c, json!({"credential_hash": "h", "reuse_count": 1})).is_some());
        assert!(fire(&c, json!({"credential_hash": "h", "reuse_count": 0})).is_none());
        assert!(fire(&c, json!({"credential_hash": "", "reuse_count": 3})).is_none());
    }

    #[test]
    fn valid_account_use_requires_true_not_truthy() {
        let c = Credential::ValidAccountUse {
            require_prior_brute: true,
        };
        assert!(fire(&c, json!({"result": "success", "prior_brute": true})).is_some());
        assert!(fire(&c, json!({"result": "success", "prior_brute": 1})).is_none());
        assert!(fire(&c, json!({"result": "Success", "prior_brute": true})).is_none());
        let c = Credential::ValidAccountUse {
            require_prior_brute: false,
        };
        assert_eq!(fire(&c, json!({"result": "success"})), Some(json!({})));
    }

    #[test]
    fn default_pairs_are_exact() {
        let c = Credential::DefaultCredentials {
            pairs: vec![
                ("root".into(), "".into()),
                ("pi".into(), "raspberry".into()),
            ],
        };
        assert!(fire(&c, json!({"username": "root", "password": ""})).is_some());
        assert!(fire(&c, json!({"username": "pi", "password": "Raspberry"})).is_none());
        assert!(fire(&c, json!({"username": "root"})).is_none());
    }

    #[test]
    fn spraying_threshold() {
        let c = Credential::PasswordSpraying { threshold: 3 };
        assert!(fire(&c, json!({"shared_password_hash": "h", "account_count": 3})).is_some());
        assert!(fire(&c, json!({"shared_password_hash": "h", "account_count": 2})).is_none());
    }
}
