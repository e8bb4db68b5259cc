//! The taggers of DECNET's composite (spec §3): which rules each one owns
//! and which source kinds each one sees, in composite order.

use serde::Serialize;

/// One tagger of the composite, in the order their tags are output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifter {
    /// The generic engine: pattern rules and declarative rules.
    RuleEngine,
    Behavioral,
    Intel,
    CanaryFingerprint,
    Email,
    Identity,
    Credential,
    HttpFingerprint,
    Ipv6Leak,
}

/// The source kinds DECNET's producers emit (`KNOWN_SOURCE_KINDS`).
pub const KNOWN_SOURCE_KINDS: [&str; 12] = [
    "command",
    "intel",
    "email",
    "canary_fingerprint",
    "identity",
    "credential",
    "auth_attempt",
    "payload",
    "session",
    "http_request",
    "http_fingerprint",
    "ipv6_leak",
];

/// Every `lifter:*` kind DECNET's spec describes, with whether DECNET gives
/// it any behaviour.
pub const LIFTER_KINDS: [(&str, bool); 36] = [
    ("lifter:behavioral_beaconing", true),
    ("lifter:behavioral_data_destruction", true),
    ("lifter:behavioral_ransom_note", true),
    ("lifter:behavioral_exfil_over_web", true),
    ("lifter:behavioral_db_mass_read", true),
    ("lifter:behavioral_credentials_in_files", true),
    ("lifter:behavioral_k8s_sa_token", true),
    ("lifter:behavioral_docker_escape", true),
    ("lifter:behavioral_llmnr_poisoning", true),
    ("lifter:behavioral_tftp_router_config", true),
    ("lifter:intel_abuseipdb", true),
    ("lifter:intel_greynoise", true),
    ("lifter:intel_feodo", true),
    ("lifter:intel_threatfox", true),
    ("lifter:intel_aggregate_bump", false),
    ("lifter:canary_webdriver", true),
    ("lifter:canary_automation_hash", true),
    ("lifter:canary_webrtc_leak", true),
    ("lifter:canary_tz_lang_mismatch", true),
    ("lifter:canary_platform_inconsistency", true),
    ("lifter:email_open_relay", true),
    ("lifter:email_mass_phish", true),
    ("lifter:email_xmailer_kit", true),
    ("lifter:email_idn_url", true),
    ("lifter:email_sender_masquerade", true),
    ("lifter:email_malicious_attachment", true),
    ("lifter:email_bec", true),
    ("lifter:email_encoded_payload", true),
    ("lifter:identity_password_spraying", true),
    ("lifter:credential_auth_brute_generic", true),
    ("lifter:credential_password_guessing", true),
    ("lifter:credential_reuse", true),
    ("lifter:credential_valid_account_use", true),
    ("lifter:credential_default_credentials", true),
    ("lifter:ipv6_link_local_leak", true),
    ("lifter:c2_fingerprint", false),
];

impl Lifter {
    pub const ALL: [Lifter; 9] = [
        Lifter::RuleEngine,
        Lifter::Behavioral,
        Lifter::Intel,
        Lifter::CanaryFingerprint,
        Lifter::Email,
        Lifter::Identity,
        Lifter::Credential,
        Lifter::HttpFingerprint,
        Lifter::Ipv6Leak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Lifter::RuleEngine => "rule_engine",
            Lifter::Behavioral => "behavioral",
            Lifter::Intel => "intel",
            Lifter::CanaryFingerprint => "canary_fingerprint",
            Lifter::Email => "email",
            Lifter::Identity => "identity",
            Lifter::Credential => "credential",
            Lifter::HttpFingerprint => "http_fingerprint",
            Lifter::Ipv6Leak => "ipv6_leak",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The source kinds DECNET routes to this tagger (`HANDLES`).
    pub fn handles(self) -> &'static [&'static str] {
        match self {
            Lifter::RuleEngine => &["command", "http_request", "auth_attempt", "payload"],
            Lifter::Behavioral => &["session", "email", "http_request"],
            Lifter::Intel => &["intel"],
            Lifter::CanaryFingerprint => &["canary_fingerprint"],
            Lifter::Email => &["email"],
            Lifter::Identity => &["identity"],
            Lifter::Credential => &["credential", "auth_attempt"],
            Lifter::HttpFingerprint => &["http_fingerprint"],
            Lifter::Ipv6Leak => &["ipv6_leak"],
        }
    }

    /// The tagger that owns a rule with this `match.kind` (spec §3.1), or
    /// `None` when nobody does (e.g. `lifter:c2_fingerprint`).
    pub fn owner_of(kind: Option<&str>) -> Option<Lifter> {
        let Some(kind) = kind.filter(|k| k.starts_with("lifter:")) else {
            return Some(Lifter::RuleEngine);
        };
        let rest = &kind["lifter:".len()..];
        let owner = if rest.starts_with("behavioral_") {
            Lifter::Behavioral
        } else if rest.starts_with("intel_") {
            Lifter::Intel
        } else if rest.starts_with("canary_") {
            Lifter::CanaryFingerprint
        } else if rest.starts_with("email_") {
            Lifter::Email
        } else if rest.starts_with("identity_") {
            Lifter::Identity
        } else if rest.starts_with("credential_") {
            Lifter::Credential
        } else if rest == "ipv6_link_local_leak" {
            Lifter::Ipv6Leak
        } else {
            return None;
        };
        Some(owner)
    }

    /// The engine's default field per source kind (spec §4).
    pub fn default_field(source_kind: &str) -> Option<&'static str> {
        Some(match source_kind {
            "command" => "command_text",
            "http_request" => "raw_url",
            "auth_attempt" => "username",
            "payload" => "payload_text",
            "email" => "subject",
            "intel" => "verdict",
            "canary_fingerprint" => "ua_signature",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_follows_prefixes() {
        assert_eq!(Lifter::owner_of(None), Some(Lifter::RuleEngine));
        assert_eq!(Lifter::owner_of(Some("pattern")), Some(Lifter::RuleEngine));
        assert_eq!(
            Lifter::owner_of(Some("lifter:email_bec")),
            Some(Lifter::Email)
        );
        assert_eq!(
            Lifter::owner_of(Some("lifter:ipv6_link_local_leak")),
            Some(Lifter::Ipv6Leak)
        );
        assert_eq!(Lifter::owner_of(Some("lifter:ipv6_other")), None);
        assert_eq!(Lifter::owner_of(Some("lifter:c2_fingerprint")), None);
        for (kind, _) in LIFTER_KINDS {
            if kind != "lifter:c2_fingerprint" {
                assert!(Lifter::owner_of(Some(kind)).is_some(), "{kind}");
            }
        }
    }
}
