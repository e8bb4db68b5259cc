//! One rule file's text → a checked [`Rule`], or located diagnostics.
//!
//! Everything that can be checked is checked here, at load time: types, the
//! regexes, confidence ranges, ATT&CK ids, `match.kind`.

use super::conditions::{looks_declarative, Condition};
use super::{Emit, Matcher, PatternMatch, Rule, RuleSource};
use crate::attack::{self, Attack};
use crate::diag::{Code, Diagnostic};
use crate::lifter::{Lifter, LIFTER_KINDS};
use crate::lifters::LifterRule;
use crate::pyregex::{PyRegex, STEP_LIMIT};
use crate::yaml::{self, Node, Pos, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Options for loading rules.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Unknown keys are errors instead of warnings.
    pub strict: bool,
    /// Also compile each pattern's full-Unicode program, which is otherwise
    /// built when a rule first sees non-ASCII text (`ttp check` does this,
    /// so a pattern too large for the linear engine is reported at once).
    pub compile_unicode: bool,
    /// Most steps a backtracking-engine pattern may take per search before
    /// it is abandoned (counted as no match and reported).
    pub regex_step_limit: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            strict: false,
            compile_unicode: false,
            regex_step_limit: STEP_LIMIT,
        }
    }
}

/// Diagnostics collected while checking one file.
pub struct Ctx<'a> {
    pub path: &'a Path,
    pub source: &'a str,
    pub diags: Vec<Diagnostic>,
    pub options: LoadOptions,
}

impl Ctx<'_> {
    /// Records a diagnostic; its severity comes from its code.
    pub fn error(&mut self, code: Code, pos: Pos, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::new(code, self.path, pos, message).with_source(self.source));
    }

    pub fn unknown_key(&mut self, pos: Pos, key: &str, context: &str) {
        let code = if self.options.strict {
            Code::UnknownKeyStrict
        } else {
            Code::UnknownKey
        };
        self.error(code, pos, format!("unknown key `{key}` in {context}"));
    }

    /// Compiles a Python regex found at `pos`; reports it when it does not.
    pub fn regex(&mut self, pattern: &str, pos: Pos) -> Option<PyRegex> {
        let compiled =
            PyRegex::with_step_limit(pattern, self.options.regex_step_limit).and_then(|r| {
                if self.options.compile_unicode {
                    r.compile_unicode()?;
                }
                Ok(r)
            });
        match compiled {
            Ok(r) => Some(r),
            Err(e) => {
                self.error(Code::BadRegex, pos, format!("invalid regex: {e}"));
                None
            }
        }
    }

    fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }
}

const TOP_KEYS: [&str; 13] = [
    "rule_id",
    "rule_version",
    "name",
    "description",
    "applies_to",
    "match",
    "correlate",
    "emits",
    "evidence_fields",
    "last_reviewed",
    "next_review",
    "attack_release",
    "examples",
];

const EMIT_KEYS: [&str; 4] = ["tactic", "technique_id", "sub_technique_id", "confidence"];

pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    crate::tag::hex_lower(&digest)
}

/// Parses and checks one rule file. Returns the rule when the file has no
/// error, and every diagnostic (warnings and notes included).
pub fn parse_rule(
    path: &Path,
    text: &str,
    options: LoadOptions,
) -> (Option<Rule>, Vec<Diagnostic>) {
    let mut ctx = Ctx {
        path,
        source: text,
        diags: Vec::new(),
        options,
    };
    let rule = parse_inner(path, text, &mut ctx);
    let rule = if ctx.has_errors() { None } else { rule };
    let id = rule.as_ref().map(|r| r.rule_id.clone());
    let mut diags = ctx.diags;
    if let Some(id) = id {
        for d in &mut diags {
            d.rule_id = Some(id.clone());
        }
    }
    (rule, diags)
}

fn parse_inner(path: &Path, text: &str, ctx: &mut Ctx) -> Option<Rule> {
    let doc = match yaml::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            ctx.error(Code::Syntax, e.pos, e.message);
            return None;
        }
    };
    let Value::Map(entries) = &doc.value else {
        let what = if doc.value == Value::Null {
            "the file is empty".to_string()
        } else {
            format!("a rule file must be a mapping, found {}", doc.type_name())
        };
        ctx.error(Code::NotAMapping, doc.pos, what);
        return None;
    };
    for (k, _) in entries {
        match k.as_str() {
            Some(key) if TOP_KEYS.contains(&key) => {}
            Some(key) => ctx.unknown_key(k.pos, key, "a rule"),
            None => ctx.error(Code::BadValue, k.pos, "top-level keys must be strings"),
        }
    }
    let rule_id = required_string(&doc, "rule_id", ctx);
    let rule_version = rule_version(&doc, ctx);
    let name = required_string(&doc, "name", ctx);
    let description = match doc.get("description") {
        None => Some(String::new()),
        Some(n) => match n.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                ctx.error(
                    Code::BadValue,
                    n.pos,
                    format!("`description` must be a string, found {}", n.type_name()),
                );
                None
            }
        },
    };
    let applies_to = applies_to(&doc, ctx);
    let evidence_fields = match doc.get("evidence_fields") {
        None => Some(Vec::new()),
        Some(n) => string_list(n, "evidence_fields", ctx),
    };
    let matcher = matcher(&doc, ctx);
    let emits = emits(&doc, ctx);
    let examples = match (&applies_to, doc.get("examples")) {
        (_, None) => Some(Vec::new()),
        (Some(kinds), Some(n)) if doc.get("correlate").is_some() => {
            crate::correlate::examples::parse(n, &kinds[0], ctx)
        }
        (Some(kinds), Some(n)) => examples(n, &kinds[0], ctx),
        (None, Some(_)) => None,
    };
    if let (Some(kinds), Some(m)) = (&applies_to, &matcher) {
        check_reachability(&doc, kinds, m, ctx);
    }
    Some(Rule {
        rule_id: rule_id?,
        rule_version: rule_version?,
        name: name?,
        description: description?,
        applies_to: applies_to?,
        matcher: matcher?,
        emits: emits?,
        evidence_fields: evidence_fields?,
        examples: examples?,
        kind: doc
            .get("match")
            .and_then(|m| m.get("kind"))
            .and_then(Node::as_str)
            .map(String::from),
        source: RuleSource {
            path: path.to_path_buf(),
            text: Arc::from(text),
            sha256: sha256_hex(text),
        },
    })
}

/// The items of `examples: {match: [...], no_match: [...]}`, each with
/// whether it must fire (`match`); `items` says what the lists hold. Every
/// problem is reported; `None` when there was one.
pub(crate) fn example_items<'n>(
    n: &'n Node,
    items: &str,
    ctx: &mut Ctx,
) -> Option<Vec<(bool, &'n Node)>> {
    let Value::Map(entries) = &n.value else {
        ctx.error(
            Code::BadExamples,
            n.pos,
            format!("`examples` must be a mapping with `match` and/or `no_match` lists of {items}"),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in entries {
        let should_match = match k.as_str() {
            Some("match") => true,
            Some("no_match") => false,
            _ => {
                ctx.error(
                    Code::BadExamples,
                    k.pos,
                    "`examples` takes only `match` and `no_match`",
                );
                ok = false;
                continue;
            }
        };
        let Value::Seq(list) = &v.value else {
            ctx.error(
                Code::BadExamples,
                v.pos,
                format!("examples must be a list of {items}"),
            );
            ok = false;
            continue;
        };
        out.extend(list.iter().map(|item| (should_match, item)));
    }
    ok.then_some(out)
}

/// `examples: {match: [...], no_match: [...]}`; each example is an event
/// payload, whose optional `source_kind` key picks the event's kind
/// (default: the rule's first `applies_to`).
fn examples(n: &Node, default_kind: &str, ctx: &mut Ctx) -> Option<Vec<super::Example>> {
    let mut out = Vec::new();
    for (should_match, item) in example_items(n, "payloads", ctx)? {
        let serde_json::Value::Object(mut payload) = item.to_json() else {
            ctx.error(
                Code::BadExamples,
                item.pos,
                format!(
                    "an example must be a payload mapping, found {}",
                    item.type_name()
                ),
            );
            return None;
        };
        let source_kind = match payload.remove("source_kind") {
            None => default_kind.to_string(),
            Some(serde_json::Value::String(s)) => s,
            Some(_) => {
                ctx.error(
                    Code::BadExamples,
                    item.pos,
                    "an example's `source_kind` must be a string",
                );
                return None;
            }
        };
        out.push(super::Example {
            should_match,
            source_kind,
            payload: payload.into_iter().collect(),
            line: item.pos.line,
            sequence: Vec::new(),
        });
    }
    Some(out)
}

fn missing(doc: &Node, key: &str, ctx: &mut Ctx) {
    ctx.error(
        Code::MissingKey,
        doc.pos,
        format!("missing required key `{key}`"),
    );
}

fn required_string(doc: &Node, key: &str, ctx: &mut Ctx) -> Option<String> {
    let Some(n) = doc.get(key) else {
        missing(doc, key, ctx);
        return None;
    };
    match n.as_str() {
        Some("") => {
            ctx.error(Code::BadValue, n.pos, format!("`{key}` must not be empty"));
            None
        }
        Some(s) => Some(s.to_string()),
        None => {
            ctx.error(
                Code::BadValue,
                n.pos,
                format!("`{key}` must be a string, found {}", n.type_name()),
            );
            None
        }
    }
}

/// `rule_version` as pydantic's lax int: integers, booleans, numeric
/// strings and integral floats.
fn rule_version(doc: &Node, ctx: &mut Ctx) -> Option<i64> {
    let Some(n) = doc.get("rule_version") else {
        missing(doc, "rule_version", ctx);
        return None;
    };
    let v = match &n.value {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        Value::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if v.is_none() {
        ctx.error(
            Code::BadValue,
            n.pos,
            format!("`rule_version` must be an integer, found {}", n.type_name()),
        );
    }
    v
}

fn string_list(n: &Node, key: &str, ctx: &mut Ctx) -> Option<Vec<String>> {
    let Value::Seq(items) = &n.value else {
        ctx.error(
            Code::BadValue,
            n.pos,
            format!("`{key}` must be a list of strings, found {}", n.type_name()),
        );
        return None;
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_str() {
            Some(s) => out.push(s.to_string()),
            None => {
                ctx.error(
                    Code::BadValue,
                    item.pos,
                    format!("`{key}` must hold strings, found {}", item.type_name()),
                );
                return None;
            }
        }
    }
    Some(out)
}

fn applies_to(doc: &Node, ctx: &mut Ctx) -> Option<Vec<String>> {
    let Some(n) = doc.get("applies_to") else {
        missing(doc, "applies_to", ctx);
        return None;
    };
    let mut kinds = string_list(n, "applies_to", ctx)?;
    let mut seen = std::collections::HashSet::new();
    kinds.retain(|k| seen.insert(k.clone()));
    if kinds.is_empty() {
        ctx.error(
            Code::EmptyAppliesTo,
            n.pos,
            "`applies_to` is empty: the rule could never fire",
        );
        return None;
    }
    Some(kinds)
}

fn compile_regex(n: &Node, ctx: &mut Ctx) -> Option<PyRegex> {
    let Some(p) = n.as_str() else {
        ctx.error(
            Code::BadValue,
            n.pos,
            format!("`pattern` must be a string, found {}", n.type_name()),
        );
        return None;
    };
    let r = ctx.regex(p, n.pos)?;
    if let Some(reason) = r.backtracking_reason() {
        ctx.error(
            Code::Backtracking,
            n.pos,
            format!(
                "this pattern uses {reason}, so it runs on the backtracking engine \
                 (at most {} steps per match)",
                ctx.options.regex_step_limit
            ),
        );
    }
    Some(r)
}

fn matcher(doc: &Node, ctx: &mut Ctx) -> Option<Matcher> {
    match (doc.get("match"), doc.get("correlate")) {
        (Some(_), Some(c)) => {
            ctx.error(
                Code::BadValue,
                c.pos,
                "a rule takes `match` (one event) or `correlate` (many events), not both",
            );
            return None;
        }
        (None, Some(c)) => {
            return crate::correlate::Correlation::parse(c, ctx)
                .map(|c| Matcher::Correlation(Box::new(c)));
        }
        _ => {}
    }
    let Some(m) = doc.get("match") else {
        ctx.error(
            Code::MissingKey,
            doc.pos,
            "missing required key `match` (or `correlate` for a rule over many events)",
        );
        return None;
    };
    let Value::Map(entries) = &m.value else {
        ctx.error(
            Code::BadValue,
            m.pos,
            format!("`match` must be a mapping, found {}", m.type_name()),
        );
        return None;
    };
    if let Some((k, _)) = entries.iter().find(|(k, _)| k.as_str().is_none()) {
        ctx.error(Code::BadValue, k.pos, "`match` keys must be strings");
        return None;
    }
    let kind_node = m.get("kind");
    let kind = match kind_node {
        None => None,
        Some(n) => match n.as_str() {
            Some(s) => Some(s),
            None => {
                ctx.error(
                    Code::UnknownMatchKind,
                    n.pos,
                    format!("`match.kind` must be a string, found {}", n.type_name()),
                );
                return None;
            }
        },
    };
    let kind_pos = kind_node.map(|n| n.pos).unwrap_or(m.pos);
    match kind {
        Some(k) if k.starts_with("lifter:") => {
            let Some((_, has_behaviour)) = LIFTER_KINDS.iter().find(|(name, _)| *name == k) else {
                ctx.error(
                    Code::UnknownMatchKind,
                    kind_pos,
                    format!("unknown lifter kind `{k}`"),
                );
                return None;
            };
            if !has_behaviour {
                ctx.error(
                    Code::LifterNoBehaviour,
                    kind_pos,
                    format!("`{k}` has no behaviour (as in DECNET): this rule never fires"),
                );
            }
            LifterRule::compile(k, m, ctx).map(Matcher::Lifter)
        }
        Some("pattern") => pattern_form(m, ctx),
        None if m.get("pattern").is_some() => pattern_form(m, ctx),
        Some("conditions") => Condition::parse(m, ctx, &["kind"]).map(Matcher::Conditions),
        None if looks_declarative(m) => Condition::parse(m, ctx, &[]).map(Matcher::Conditions),
        None => {
            ctx.error(
                Code::MissingKey,
                m.pos,
                "`match` needs a `pattern`, declarative conditions, or a `kind`",
            );
            None
        }
        Some(other) => {
            ctx.error(
                Code::UnknownMatchKind,
                kind_pos,
                format!(
                    "unknown match kind `{other}` (expected `pattern`, `conditions` or a `lifter:*` kind)"
                ),
            );
            None
        }
    }
}

fn pattern_form(m: &Node, ctx: &mut Ctx) -> Option<Matcher> {
    if let Value::Map(entries) = &m.value {
        for (k, _) in entries {
            if let Some(key) = k.as_str() {
                if !["kind", "field", "pattern"].contains(&key) {
                    ctx.unknown_key(k.pos, key, "a pattern match");
                }
            }
        }
    }
    let Some(p) = m.get("pattern") else {
        missing(m, "pattern", ctx);
        return None;
    };
    let field = match m.get("field") {
        None => None,
        Some(n) => match &n.value {
            Value::Null => None,
            Value::Str(s) if s.is_empty() => None,
            Value::Str(s) => Some(s.clone()),
            _ => {
                ctx.error(
                    Code::BadValue,
                    n.pos,
                    format!("`field` must be a string, found {}", n.type_name()),
                );
                return None;
            }
        },
    };
    let regex = compile_regex(p, ctx)?;
    Some(Matcher::Pattern(PatternMatch { field, regex }))
}

fn check_reachability(doc: &Node, kinds: &[String], m: &Matcher, ctx: &mut Ctx) {
    let pos = doc.get("applies_to").map(|n| n.pos).unwrap_or(doc.pos);
    let handled: &[&str] = match m {
        Matcher::Pattern(_) => Lifter::RuleEngine.handles(),
        Matcher::Conditions(_) | Matcher::Correlation(_) => return,
        Matcher::Lifter(_) => {
            let kind = doc
                .get("match")
                .and_then(|m| m.get("kind"))
                .and_then(Node::as_str);
            match Lifter::owner_of(kind) {
                Some(owner) => owner.handles(),
                None => return,
            }
        }
    };
    for k in kinds {
        if !handled.contains(&k.as_str()) {
            ctx.error(
                Code::UnreachableSourceKind,
                pos,
                format!(
                    "`{k}` events never reach this rule (its tagger handles only {}); \
                     use declarative conditions to match other source kinds",
                    handled.join(", ")
                ),
            );
        }
    }
}

fn emits(doc: &Node, ctx: &mut Ctx) -> Option<Vec<Emit>> {
    let Some(n) = doc.get("emits") else {
        missing(doc, "emits", ctx);
        return None;
    };
    let Value::Seq(items) = &n.value else {
        ctx.error(
            Code::BadValue,
            n.pos,
            format!("`emits` must be a list, found {}", n.type_name()),
        );
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match emit(item, ctx) {
            Some(e) => out.push(e),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn emit(n: &Node, ctx: &mut Ctx) -> Option<Emit> {
    let Value::Map(entries) = &n.value else {
        ctx.error(
            Code::BadValue,
            n.pos,
            format!("each emit must be a mapping, found {}", n.type_name()),
        );
        return None;
    };
    for (k, _) in entries {
        match k.as_str() {
            Some(key) if EMIT_KEYS.contains(&key) => {}
            Some(key) => ctx.unknown_key(k.pos, key, "an emit"),
            None => ctx.error(Code::BadValue, k.pos, "emit keys must be strings"),
        }
    }
    let tactic = id_field(
        n,
        "tactic",
        Code::BadTactic,
        attack::is_tactic_id,
        "TA0001",
        ctx,
    );
    let technique = id_field(
        n,
        "technique_id",
        Code::BadTechnique,
        attack::is_technique_id,
        "T1059",
        ctx,
    );
    let sub = match n.get("sub_technique_id") {
        None => Some(None),
        Some(s) => match &s.value {
            Value::Null => Some(None),
            Value::Str(v) if v.is_empty() => Some(None),
            Value::Str(v) => {
                if !attack::is_subtechnique_id(v) {
                    ctx.error(
                        Code::BadSubTechnique,
                        s.pos,
                        format!("`{v}` is not a sub-technique id (e.g. T1059.004)"),
                    );
                    None
                } else if technique
                    .as_deref()
                    .is_some_and(|t| !v.starts_with(&format!("{t}.")))
                {
                    ctx.error(
                        Code::BadSubTechnique,
                        s.pos,
                        format!(
                            "sub-technique `{v}` does not belong to technique `{}`",
                            technique.as_deref().unwrap_or("")
                        ),
                    );
                    None
                } else {
                    Some(Some(v.clone()))
                }
            }
            _ => {
                ctx.error(
                    Code::BadSubTechnique,
                    s.pos,
                    format!(
                        "`sub_technique_id` must be a string, found {}",
                        s.type_name()
                    ),
                );
                None
            }
        },
    };
    let confidence = confidence(n, ctx);
    let (tactic, technique, sub, confidence) = (tactic?, technique?, sub?, confidence?);
    check_attack(n, &tactic, &technique, sub.as_deref(), ctx);
    let mitre_url = Attack::embedded().mitre_url(sub.as_deref().unwrap_or(&technique));
    Some(Emit {
        tactic,
        technique_id: technique,
        sub_technique_id: sub,
        confidence,
        mitre_url,
    })
}

fn id_field(
    n: &Node,
    key: &str,
    code: Code,
    well_formed: fn(&str) -> bool,
    example: &str,
    ctx: &mut Ctx,
) -> Option<String> {
    let Some(v) = n.get(key) else {
        missing(n, key, ctx);
        return None;
    };
    match v.as_str() {
        Some(s) if well_formed(s) => Some(s.to_string()),
        Some(s) => {
            ctx.error(
                code,
                v.pos,
                format!("`{key}` `{s}` is not well formed (e.g. {example})"),
            );
            None
        }
        None => {
            ctx.error(
                code,
                v.pos,
                format!(
                    "`{key}` must be a string like {example}, found {}",
                    v.type_name()
                ),
            );
            None
        }
    }
}

fn confidence(n: &Node, ctx: &mut Ctx) -> Option<f64> {
    let Some(v) = n.get("confidence") else {
        missing(n, "confidence", ctx);
        return None;
    };
    let c = match &v.value {
        Value::Float(f) => Some(*f),
        Value::Int(i) => Some(*i as f64),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match c {
        Some(c) if (0.0..=1.0).contains(&c) => Some(c),
        Some(c) => {
            ctx.error(
                Code::BadConfidence,
                v.pos,
                format!("confidence {c} is outside [0, 1]"),
            );
            None
        }
        None => {
            ctx.error(
                Code::BadConfidence,
                v.pos,
                format!(
                    "confidence must be a number in [0, 1], found {}",
                    v.type_name()
                ),
            );
            None
        }
    }
}

fn check_attack(n: &Node, tactic: &str, technique: &str, sub: Option<&str>, ctx: &mut Ctx) {
    let attack = Attack::embedded();
    let pos_of = |key: &str| n.get(key).map(|v| v.pos).unwrap_or(n.pos);
    let tactic_info = attack.tactic(tactic);
    if tactic_info.is_none() {
        ctx.error(
            Code::UnknownTactic,
            pos_of("tactic"),
            format!("tactic `{tactic}` is not an ATT&CK Enterprise tactic"),
        );
    }
    for (id, key) in [(Some(technique), "technique_id"), (sub, "sub_technique_id")] {
        let Some(id) = id else { continue };
        match attack.technique(id) {
            None => ctx.error(
                Code::UnknownTechnique,
                pos_of(key),
                format!("`{id}` is not in ATT&CK ({})", attack::TABLE_RELEASE),
            ),
            Some(t) => {
                if t.revoked {
                    ctx.error(
                        Code::RevokedTechnique,
                        pos_of(key),
                        format!("`{id}` ({}) is revoked in ATT&CK", t.name),
                    );
                } else if t.deprecated {
                    ctx.error(
                        Code::DeprecatedTechnique,
                        pos_of(key),
                        format!("`{id}` ({}) is deprecated in ATT&CK", t.name),
                    );
                }
                if let Some(ta) = tactic_info {
                    if !t.tactics.is_empty() && !t.tactics.contains(&ta.shortname) {
                        ctx.error(
                            Code::TacticMismatch,
                            pos_of("tactic"),
                            format!(
                                "`{id}` ({}) does not belong to tactic {tactic} ({}); it belongs to {}",
                                t.name,
                                ta.shortname,
                                t.tactics.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Rule>, Vec<Diagnostic>) {
        parse_rule(Path::new("r.yaml"), text, LoadOptions::default())
    }

    const GOOD: &str = "rule_id: X1\nrule_version: 1\nname: n\napplies_to: [command]\n\
        match:\n  pattern: 'whoami'\nemits:\n  - tactic: TA0007\n    technique_id: T1033\n    confidence: 0.5\n";

    fn codes(d: &[Diagnostic]) -> Vec<&'static str> {
        d.iter().map(|d| d.code).collect()
    }

    #[test]
    fn good_rule_loads_without_diagnostics() {
        let (r, d) = parse(GOOD);
        assert!(d.is_empty(), "{d:?}");
        let r = r.unwrap();
        assert_eq!(r.rule_id, "X1");
        assert_eq!(r.emits[0].confidence, 0.5);
        assert_eq!(r.source.sha256.len(), 64);
    }

    #[test]
    fn bad_regex_is_located_on_the_pattern() {
        let (r, d) = parse(&GOOD.replace("'whoami'", "'(unclosed'"));
        assert!(r.is_none());
        assert_eq!(codes(&d), vec!["E008"]);
        assert_eq!((d[0].line, d[0].col), (6, 12));
        assert!(d[0].snippet.as_deref().unwrap_or("").contains('^'));
    }

    #[test]
    fn confidence_out_of_range() {
        let (r, d) = parse(&GOOD.replace("0.5", "1.5"));
        assert!(r.is_none());
        assert_eq!(codes(&d), vec!["E009"]);
        assert_eq!(d[0].line, 10);
    }

    #[test]
    fn ids_are_checked() {
        let (_, d) = parse(&GOOD.replace("TA0007", "TA7"));
        assert_eq!(codes(&d), vec!["E010"]);
        let (_, d) = parse(&GOOD.replace("T1033", "T10"));
        assert_eq!(codes(&d), vec!["E011"]);
        let sub = GOOD.replace(
            "    confidence",
            "    sub_technique_id: T1059.004\n    confidence",
        );
        let (_, d) = parse(&sub);
        assert_eq!(codes(&d), vec!["E012"]);
        let (r, d) = parse(&GOOD.replace("T1033", "T1059"));
        assert!(r.is_some());
        assert_eq!(codes(&d), vec!["W105"]);
        let (r, d) = parse(&GOOD.replace("T1033", "T9999"));
        assert!(r.is_some());
        assert_eq!(codes(&d), vec!["W102"]);
    }

    #[test]
    fn empty_applies_to_and_unknown_kind() {
        let (_, d) = parse(&GOOD.replace("[command]", "[]"));
        assert_eq!(codes(&d), vec!["E006"]);
        let (_, d) = parse(&GOOD.replace("match:\n", "match:\n  kind: weird\n"));
        assert_eq!(codes(&d), vec!["E013"]);
    }

    #[test]
    fn unknown_keys_warn_or_fail_under_strict() {
        let text = format!("{GOOD}colour: blue\nlast_reviewed: 2026-01-01\n");
        let (r, d) = parse(&text);
        assert!(r.is_some());
        assert_eq!(codes(&d), vec!["W101"]);
        let (r, d) = parse_rule(
            Path::new("r.yaml"),
            &text,
            LoadOptions {
                strict: true,
                ..Default::default()
            },
        );
        assert!(r.is_none());
        assert_eq!(codes(&d), vec!["E015"]);
    }

    #[test]
    fn lifter_rules_load_with_a_warning() {
        let text = GOOD
            .replace("  pattern: 'whoami'", "  kind: lifter:credential_reuse")
            .replace("[command]", "[credential]");
        let (r, d) = parse(&text);
        assert!(r.is_some());
        assert!(d.is_empty(), "{d:?}");
        let bad = GOOD
            .replace(
                "  pattern: 'whoami'",
                "  kind: lifter:credential_auth_brute_generic\n  fail_threshold: [5]",
            )
            .replace("[command]", "[auth_attempt]");
        let (r, d) = parse(&bad);
        assert!(r.is_none());
        assert_eq!(codes(&d), vec!["E017"]);
        assert_eq!((d[0].line, d[0].col), (7, 19));
    }

    #[test]
    fn missing_keys_and_wrong_types() {
        let (_, d) = parse("rule_id: 5\nname: n\n");
        let c = codes(&d);
        assert!(c.contains(&"E005"), "{c:?}");
        assert!(c.contains(&"E004"), "{c:?}");
        let (_, d) = parse("");
        assert_eq!(codes(&d), vec!["E003"]);
        let (_, d) = parse("a: [\n");
        assert_eq!(codes(&d), vec!["E002"]);
    }

    #[test]
    fn lax_rule_version() {
        for (v, want) in [("2", 2), ("'3'", 3), ("4.0", 4), ("true", 1)] {
            let (r, d) = parse(&GOOD.replace("rule_version: 1", &format!("rule_version: {v}")));
            assert_eq!(r.map(|r| r.rule_version), Some(want), "{v}: {d:?}");
        }
        let (_, d) = parse(&GOOD.replace("rule_version: 1", "rule_version: 2.5"));
        assert_eq!(codes(&d), vec!["E005"]);
    }

    #[test]
    fn declarative_conditions_parse_and_report_errors() {
        let text = GOOD.replace(
            "  pattern: 'whoami'",
            "  all:\n    - {field: command_text, contains: [wget, curl], nocase: true}\n    - not: {field: user, equals: root}\n",
        );
        let (r, d) = parse(&text);
        assert!(d.is_empty(), "{d:?}");
        assert!(matches!(r.unwrap().matcher, Matcher::Conditions(_)));
        let bad = GOOD.replace("  pattern: 'whoami'", "  field: src\n  cidr: 10.0.0.0/33\n");
        let (_, d) = parse(&bad);
        assert_eq!(codes(&d), vec!["E014"]);
        assert_eq!(d[0].line, 7);
        let bad = GOOD.replace("  pattern: 'whoami'", "  field: x\n  gt: 1\n  lt: 3\n");
        assert_eq!(codes(&parse(&bad).1), vec!["E014"]);
    }
}
