//! The vendored MITRE ATT&CK Enterprise table (`data/attack/`, see its NOTICE).
//!
//! Used at load time to check rule ids (unknown, revoked, deprecated, tactic
//! mismatch) and at tag time to build `mitre_url`.

use std::collections::HashMap;
use std::sync::OnceLock;

const TECHNIQUES_TSV: &str = include_str!("../data/attack/enterprise-attack-v18.1-techniques.tsv");
const TACTICS_TSV: &str = include_str!("../data/attack/enterprise-attack-v18.1-tactics.tsv");
const GROUPS_TSV: &str = include_str!("../data/attack/enterprise-attack-v18.1-groups.tsv");
const TECHNIQUE_GROUPS_TSV: &str =
    include_str!("../data/attack/enterprise-attack-v18.1-technique-groups.tsv");
const STIX_TSV: &str = include_str!("../data/attack/enterprise-attack-v18.1-stix.tsv");

/// The ATT&CK release, as a Navigator layer's `versions.attack` spells it.
pub const RELEASE_NUMBER: &str = "18.1";

/// The ATT&CK release the vendored table comes from.
pub const TABLE_RELEASE: &str = "enterprise-attack-v18.1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technique {
    pub id: String,
    pub name: String,
    pub is_subtechnique: bool,
    /// Kill-chain tactic short names, e.g. `credential-access`.
    pub tactics: Vec<String>,
    pub revoked: bool,
    pub deprecated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tactic {
    pub id: String,
    pub shortname: String,
    pub name: String,
}

/// An intrusion set (an ATT&CK group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub url: Option<String>,
}

/// A technique's STIX object identity in MITRE's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StixRef {
    pub id: String,
    pub created: String,
    pub modified: String,
}

#[derive(Debug, Default)]
pub struct Attack {
    techniques: HashMap<String, Technique>,
    tactics: HashMap<String, Tactic>,
    groups: HashMap<String, Group>,
    technique_groups: HashMap<String, Vec<String>>,
    stix: HashMap<String, StixRef>,
}

impl Attack {
    /// The embedded table, parsed once.
    pub fn embedded() -> &'static Attack {
        static TABLE: OnceLock<Attack> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut table = Attack::parse(TECHNIQUES_TSV, TACTICS_TSV);
            table.parse_groups(GROUPS_TSV, TECHNIQUE_GROUPS_TSV, STIX_TSV);
            table
        })
    }

    fn parse_groups(&mut self, groups: &str, technique_groups: &str, stix: &str) {
        for line in groups.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if let [id, name, aliases, url] = cols[..] {
                self.groups.insert(
                    id.to_string(),
                    Group {
                        id: id.to_string(),
                        name: name.to_string(),
                        aliases: aliases
                            .split('|')
                            .filter(|a| !a.is_empty())
                            .map(String::from)
                            .collect(),
                        url: (!url.is_empty()).then(|| url.to_string()),
                    },
                );
            }
        }
        for line in technique_groups.lines().skip(1) {
            if let Some((t, ids)) = line.split_once('\t') {
                self.technique_groups
                    .insert(t.to_string(), ids.split(',').map(String::from).collect());
            }
        }
        for line in stix.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if let [t, id, created, modified] = cols[..] {
                self.stix.insert(
                    t.to_string(),
                    StixRef {
                        id: id.to_string(),
                        created: created.to_string(),
                        modified: modified.to_string(),
                    },
                );
            }
        }
    }

    /// The intrusion sets MITRE documents as using exactly `id` (a
    /// sub-technique is not merged with its parent), by group id; `None`
    /// when `id` is not an ATT&CK technique.
    pub fn groups_using(&self, id: &str) -> Option<Vec<&Group>> {
        self.techniques.get(id)?;
        let mut out: Vec<&Group> = self
            .technique_groups
            .get(id)
            .map(|ids| ids.iter().filter_map(|g| self.groups.get(g)).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Some(out)
    }

    /// The technique's attack-pattern in MITRE's STIX bundle.
    pub fn stix(&self, id: &str) -> Option<&StixRef> {
        self.stix.get(id)
    }

    /// Every technique, in id order.
    pub fn techniques(&self) -> Vec<&Technique> {
        let mut v: Vec<&Technique> = self.techniques.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Every tactic, in the matrix's order (TA0043 … TA0040).
    pub fn tactics(&self) -> Vec<&Tactic> {
        TACTICS_TSV
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
            .filter_map(|id| self.tactics.get(id))
            .collect()
    }

    fn parse(techniques: &str, tactics: &str) -> Attack {
        let mut table = Attack::default();
        for line in techniques.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 6 {
                continue;
            }
            let t = Technique {
                id: cols[0].to_string(),
                name: cols[1].to_string(),
                is_subtechnique: cols[2] == "true",
                tactics: cols[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                revoked: cols[4] == "true",
                deprecated: cols[5] == "true",
            };
            table.techniques.insert(t.id.clone(), t);
        }
        for line in tactics.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 3 {
                continue;
            }
            let t = Tactic {
                id: cols[0].to_string(),
                shortname: cols[1].to_string(),
                name: cols[2].to_string(),
            };
            table.tactics.insert(t.id.clone(), t);
        }
        table
    }

    pub fn technique(&self, id: &str) -> Option<&Technique> {
        self.techniques.get(id)
    }

    pub fn tactic(&self, id: &str) -> Option<&Tactic> {
        self.tactics.get(id)
    }

    pub fn technique_count(&self) -> usize {
        self.techniques.len()
    }

    /// DECNET's technique name: `None` for an unknown id, `"<parent>: <own>"`
    /// for a sub-technique, else the technique's own name. Revoked and
    /// deprecated techniques still resolve.
    pub fn technique_name(&self, id: &str) -> Option<String> {
        let t = self.techniques.get(id)?;
        match id.split_once('.') {
            Some((parent, _)) if t.is_subtechnique => {
                let p = self.techniques.get(parent)?;
                Some(format!("{}: {}", p.name, t.name))
            }
            _ => Some(t.name.clone()),
        }
    }

    /// DECNET's `mitre_url`: the technique page of `id` when the id is in the
    /// table, else `None` (no fallback to a parent technique).
    pub fn mitre_url(&self, id: &str) -> Option<String> {
        self.techniques.get(id)?;
        Some(match id.split_once('.') {
            Some((parent, sub)) => format!("https://attack.mitre.org/techniques/{parent}/{sub}"),
            None => format!("https://attack.mitre.org/techniques/{id}"),
        })
    }
}

/// `TA` followed by four digits.
pub fn is_tactic_id(s: &str) -> bool {
    s.len() == 6 && s.starts_with("TA") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

/// `T` followed by four digits.
pub fn is_technique_id(s: &str) -> bool {
    s.len() == 5 && s.starts_with('T') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// `Tnnnn.nnn`.
pub fn is_subtechnique_id(s: &str) -> bool {
    match s.split_once('.') {
        Some((t, sub)) => {
            is_technique_id(t) && sub.len() == 3 && sub.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_loads_and_builds_urls() {
        let a = Attack::embedded();
        assert!(a.technique_count() > 800);
        assert_eq!(
            a.mitre_url("T1059.004").as_deref(),
            Some("https://attack.mitre.org/techniques/T1059/004")
        );
        assert_eq!(
            a.mitre_url("T1059").as_deref(),
            Some("https://attack.mitre.org/techniques/T1059")
        );
        assert_eq!(a.mitre_url("001"), None);
        assert_eq!(
            a.technique_name("T1110.003").as_deref(),
            Some("Brute Force: Password Spraying")
        );
        assert_eq!(
            a.technique_name("T1002").as_deref(),
            Some("Data Compressed")
        );
        assert_eq!(a.technique_name("T9999"), None);
        assert_eq!(a.technique_name(""), None);
        assert_eq!(a.mitre_url("T1059.999"), None);
        assert_eq!(
            a.tactic("TA0006").map(|t| t.shortname.as_str()),
            Some("credential-access")
        );
        assert!(a
            .technique("T1110")
            .unwrap()
            .tactics
            .contains(&"credential-access".to_string()));
    }

    #[test]
    fn groups_and_stix_ids() {
        let a = Attack::embedded();
        let g: Vec<&str> = a
            .groups_using("T1110.001")
            .unwrap()
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        assert_eq!(g, ["G0007", "G0016"]);
        let apt28 = a.groups_using("T1110.001").unwrap()[0];
        assert_eq!(apt28.name, "APT28");
        assert!(apt28.aliases.iter().any(|x| x == "Fancy Bear"));
        assert_eq!(
            apt28.url.as_deref(),
            Some("https://attack.mitre.org/groups/G0007")
        );
        assert_eq!(a.groups_using("T1548.003"), Some(vec![]));
        assert_eq!(a.groups_using("T9999"), None);
        assert_eq!(
            a.stix("T1001").map(|s| s.id.as_str()),
            Some("attack-pattern--ad255bfe-a9e6-4b52-a258-8d3462abe842")
        );
        assert_eq!(a.tactics().first().map(|t| t.id.as_str()), Some("TA0043"));
        assert_eq!(a.tactics().len(), 14);
    }

    #[test]
    fn id_shapes() {
        assert!(is_tactic_id("TA0001"));
        assert!(!is_tactic_id("TA001"));
        assert!(is_technique_id("T1110"));
        assert!(!is_technique_id("T1110.001"));
        assert!(is_subtechnique_id("T1110.001"));
        assert!(!is_subtechnique_id("T1110.01"));
    }
}
