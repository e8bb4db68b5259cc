//! Load-time diagnostics: a stable code, `path:line:col`, a one-line message
//! and, where the position is known, a caret snippet of the source line.

use crate::yaml::Pos;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Every diagnostic code the loader can emit. The codes are stable: scripts
/// and docs may rely on them. `docs/rules.md` lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    /// E001: the file cannot be read or is not UTF-8.
    Unreadable,
    /// E002: YAML syntax error (including duplicate keys and multiple documents).
    Syntax,
    /// E003: the document is not a mapping (an empty file included).
    NotAMapping,
    /// E004: a required key is missing.
    MissingKey,
    /// E005: a key holds a value of the wrong type or shape.
    BadValue,
    /// E006: `applies_to` is empty.
    EmptyAppliesTo,
    /// E007: two files define the same `rule_id`.
    DuplicateRuleId,
    /// E008: a regular expression does not compile.
    BadRegex,
    /// E009: a confidence is not a number in [0, 1].
    BadConfidence,
    /// E010: a tactic id is not of the form `TAnnnn`.
    BadTactic,
    /// E011: a technique id is not of the form `Tnnnn`.
    BadTechnique,
    /// E012: a sub-technique id is malformed or not under its technique.
    BadSubTechnique,
    /// E013: `match.kind` is not a known kind.
    UnknownMatchKind,
    /// E014: a declarative condition is malformed.
    BadCondition,
    /// E015: an unknown key under `--strict`.
    UnknownKeyStrict,
    /// E016: the file is larger than the loader accepts.
    TooLarge,
    /// E017: a lifter parameter of the wrong type or shape.
    BadLifterParam,
    /// E018: malformed embedded `examples`.
    BadExamples,
    /// E019: a directory below the rules directory cannot be read (its
    /// rules already loaded keep serving).
    UnreadableDir,
    /// E020: an entry that looks like a rule file or directory but cannot
    /// be used: a dangling symbolic link, a symbolic link loop, a name that
    /// is not UTF-8.
    UnusableEntry,
    /// W101: an unknown key (ignored).
    UnknownKey,
    /// W102: a technique or sub-technique id that ATT&CK does not know.
    UnknownTechnique,
    /// W103: a revoked technique.
    RevokedTechnique,
    /// W104: a deprecated technique.
    DeprecatedTechnique,
    /// W105: a tactic the technique does not belong to.
    TacticMismatch,
    /// W107: a `lifter:*` kind that has no behaviour in DECNET (never fires).
    LifterNoBehaviour,
    /// W108: a source kind in `applies_to` that this rule can never see.
    UnreachableSourceKind,
    /// W109: a tactic id that ATT&CK does not know.
    UnknownTactic,
    /// W110: a correlation's `rules:` names a rule id no loaded rule has
    /// (it counts once such a rule is loaded).
    UnknownCorrelatedRule,
    /// N201: the pattern runs on the backtracking engine.
    Backtracking,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unreadable => "E001",
            Code::Syntax => "E002",
            Code::NotAMapping => "E003",
            Code::MissingKey => "E004",
            Code::BadValue => "E005",
            Code::EmptyAppliesTo => "E006",
            Code::DuplicateRuleId => "E007",
            Code::BadRegex => "E008",
            Code::BadConfidence => "E009",
            Code::BadTactic => "E010",
            Code::BadTechnique => "E011",
            Code::BadSubTechnique => "E012",
            Code::UnknownMatchKind => "E013",
            Code::BadCondition => "E014",
            Code::UnknownKeyStrict => "E015",
            Code::TooLarge => "E016",
            Code::BadLifterParam => "E017",
            Code::BadExamples => "E018",
            Code::UnreadableDir => "E019",
            Code::UnusableEntry => "E020",
            Code::UnknownKey => "W101",
            Code::UnknownTechnique => "W102",
            Code::RevokedTechnique => "W103",
            Code::DeprecatedTechnique => "W104",
            Code::TacticMismatch => "W105",
            Code::LifterNoBehaviour => "W107",
            Code::UnreachableSourceKind => "W108",
            Code::UnknownTactic => "W109",
            Code::UnknownCorrelatedRule => "W110",
            Code::Backtracking => "N201",
        }
    }

    pub fn severity(self) -> Severity {
        match self.as_str().as_bytes().first() {
            Some(b'E') => Severity::Error,
            Some(b'W') => Severity::Warning,
            _ => Severity::Note,
        }
    }
}

/// One finding about one rule file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub path: PathBuf,
    pub line: u32,
    pub col: u32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, path: &Path, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code: code.as_str(),
            severity: code.severity(),
            path: path.to_path_buf(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
            snippet: None,
            rule_id: None,
        }
    }

    /// Attaches a caret snippet of `source` at the diagnostic's position.
    pub fn with_source(mut self, source: &str) -> Diagnostic {
        self.snippet = snippet(
            source,
            Pos {
                line: self.line,
                col: self.col,
            },
        );
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths, messages and snippets quote rule files: escaped for the
        // terminal (crate::text).
        write!(
            f,
            "{}:{}:{}: {}[{}]: {}",
            crate::text::line(&self.path.display().to_string()),
            self.line,
            self.col,
            self.severity,
            self.code,
            crate::text::line(&self.message)
        )?;
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

/// A two-line excerpt: the source line and a caret under the column.
pub fn snippet(source: &str, pos: Pos) -> Option<String> {
    if pos.line == 0 {
        return None;
    }
    let line = source.lines().nth(pos.line as usize - 1)?;
    let gutter = pos.line.to_string();
    let pad = " ".repeat(gutter.len());
    // Columns are 1-based characters; tabs are kept so the caret lines up.
    // Control characters are shown escaped; the caret follows the escapes.
    let before: String = line
        .chars()
        .take(pos.col.saturating_sub(1) as usize)
        .collect();
    let lead: String = crate::text::text(&before)
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let line = crate::text::text(line);
    Some(format!("{pad} |\n{gutter} | {line}\n{pad} | {lead}^"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_code_and_caret() {
        let src = "rule_id: R1\nmatch:\n  pattern: '('\n";
        let d = Diagnostic::new(
            Code::BadRegex,
            Path::new("rules/r1.yaml"),
            Pos { line: 3, col: 12 },
            "bad regex",
        )
        .with_source(src);
        let text = d.to_string();
        assert!(
            text.starts_with("rules/r1.yaml:3:12: error[E008]: bad regex"),
            "{text}"
        );
        assert!(text.contains("3 |   pattern: '('"), "{text}");
        assert!(text.ends_with("  |            ^"), "{text:?}");
    }

    #[test]
    fn severities_follow_code_letters() {
        assert_eq!(Code::UnknownKey.severity(), Severity::Warning);
        assert_eq!(Code::UnknownKeyStrict.severity(), Severity::Error);
        assert_eq!(Code::Backtracking.severity(), Severity::Note);
    }
}
