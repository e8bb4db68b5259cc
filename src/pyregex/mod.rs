//! Python `re.search` semantics on Rust regex engines.
//!
//! A pattern is translated (see [`translate`]) and compiled for the linear-time
//! `regex` crate whenever that engine can express it exactly. Patterns with
//! look-around, back-references and the like fall back to `fancy-regex`, a
//! backtracking engine, with a hard step limit per match ([`STEP_LIMIT`]).

mod ascii;
pub mod translate;

use std::sync::OnceLock;
use thiserror::Error;
use translate::{Mode, Output, Translated};

/// Backtracking steps one match may take before it is abandoned.
pub const STEP_LIMIT: usize = 1_000_000;

/// Most bytes a compiled linear program may take.
const SIZE_LIMIT: usize = 16 << 20;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompileError {
    #[error("{0}")]
    Syntax(#[from] translate::SyntaxError),
    #[error("pattern does not compile: {0}")]
    Engine(String),
    #[error(
        "the pattern is too large: compiled, it would exceed {} MiB; make counted repetitions \
         such as `{{2000}}` smaller, or use `[a-z]`-style classes instead of Unicode ones (`\\w`, `.`)",
        .limit >> 20
    )]
    TooLarge { limit: usize },
}

impl CompileError {
    /// A linear engine build error, with a size limit named as such.
    fn linear(e: regex_automata::meta::BuildError) -> CompileError {
        match e.size_limit() {
            Some(limit) => CompileError::TooLarge { limit },
            None => CompileError::Engine(e.to_string()),
        }
    }
}

/// A search that could not run to the end; it counts as "no match", and
/// callers count and report these.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SearchAbandoned {
    /// The backtracking engine ran out of steps.
    #[error("regex step limit exceeded")]
    StepLimit,
    /// The haystack needed the full-Unicode program, and it is too large to
    /// build (`ttp check` reports such patterns).
    #[error("the pattern's full-Unicode program is too large to build (see `ttp check`)")]
    TooLarge,
}

/// Which engine runs a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Linear,
    Backtracking,
}

#[derive(Debug)]
enum Engine {
    Linear {
        /// The ASCII restriction, for haystacks that are all ASCII.
        ascii: LinearRegex,
        /// The full program, for the others.
        unicode: Box<LazyUnicode>,
        /// Python `$` emulation: also search without a final `\n`.
        end_anchor: bool,
        /// For `\b` on haystacks holding characters whose word-ness differs
        /// between Python and the regex crate: the exact pattern, compiled on
        /// first need (rare: only such non-ASCII haystacks need it).
        exact_word: Option<Box<LazyExact>>,
    },
    Backtracking {
        re: fancy_regex::Regex,
        reason: &'static str,
    },
}

/// The exact (backtracking) form of a linear pattern, compiled on first use.
#[derive(Debug)]
struct LazyExact {
    pattern: String,
    step_limit: usize,
    compiled: OnceLock<Option<fancy_regex::Regex>>,
}

impl LazyExact {
    fn get(&self) -> Option<&fancy_regex::Regex> {
        self.compiled
            .get_or_init(|| build_fancy(&self.pattern, self.step_limit).ok())
            .as_ref()
    }
}

/// The full-Unicode linear program, compiled when a haystack first needs it.
#[derive(Debug)]
struct LazyUnicode {
    pattern: String,
    compiled: OnceLock<Result<LinearRegex, CompileError>>,
}

impl LazyUnicode {
    fn get(&self) -> Result<&LinearRegex, &CompileError> {
        self.compiled
            .get_or_init(|| build_linear(&self.pattern))
            .as_ref()
    }
}

/// A compiled Python regular expression.
#[derive(Debug)]
pub struct PyRegex {
    source: String,
    engine: Engine,
    /// A `regex`-syntax pattern whose language contains the original's, for
    /// literal extraction by the prefilter.
    superset: String,
}

/// A linear-time matcher: `regex-automata`'s meta engine limited to the
/// lazy DFA and the PikeVM (no full or one-pass DFA, no bounded backtracker,
/// no literal prefilter of its own (the index's Aho-Corasick prefilter picks
/// candidate rules), no explicit capture groups), which keeps compile time
/// and memory small for packs of thousands of rules while keeping
/// linear-time search.
type LinearRegex = regex_automata::meta::Regex;

fn linear_builder() -> regex_automata::meta::Builder {
    use regex_automata::{meta, nfa::thompson::WhichCaptures};
    let mut b = meta::Regex::builder();
    b.configure(
        meta::Config::new()
            .nfa_size_limit(Some(SIZE_LIMIT))
            .onepass(false)
            .backtrack(false)
            .dfa(false)
            .auto_prefilter(false)
            .which_captures(WhichCaptures::Implicit)
            .hybrid_cache_capacity(256 * 1024),
    );
    b
}

fn build_linear(pattern: &str) -> Result<LinearRegex, CompileError> {
    linear_builder()
        .build(pattern)
        .map_err(CompileError::linear)
}

/// Compiles a linear pattern: its ASCII restriction now (see [`ascii`]),
/// its full-Unicode program on first need, or now too when the full program
/// may be large (so that one too large to build is reported at load).
fn build_programs(pattern: String) -> Result<(LinearRegex, LazyUnicode), CompileError> {
    let hir = regex_syntax::Parser::new()
        .parse(&pattern)
        .map_err(|e| CompileError::Engine(e.to_string()))?;
    let ascii = linear_builder()
        .build_from_hir(&ascii::restrict(&hir))
        .map_err(CompileError::linear)?;
    let unicode = LazyUnicode {
        pattern,
        compiled: OnceLock::new(),
    };
    if ascii::unicode_states_estimate(&hir) > EAGER_UNICODE_STATES {
        unicode.get().map_err(Clone::clone)?;
    }
    Ok((ascii, unicode))
}

/// Above this estimate (automaton states, see
/// [`ascii::unicode_states_estimate`]) the full program is built at load.
/// The size limit allows roughly ten times as many.
const EAGER_UNICODE_STATES: usize = 20_000;

fn build_fancy(pattern: &str, step_limit: usize) -> Result<fancy_regex::Regex, CompileError> {
    fancy_regex::RegexBuilder::new(pattern)
        .backtrack_limit(step_limit)
        .delegate_size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            fancy_regex::Error::CompileError(inner) => match *inner {
                fancy_regex::CompileError::InnerError(e) => CompileError::linear(e),
                other => CompileError::Engine(other.to_string()),
            },
            other => CompileError::Engine(other.to_string()),
        })
}

fn exact(pattern: &str) -> Result<String, CompileError> {
    match translate::translate(pattern, Mode::Exact)? {
        Translated::Pattern(o) => Ok(o.pattern),
        Translated::NeedsBacktracking(_) => Err(CompileError::Engine(
            "internal: exact translation refused".into(),
        )),
    }
}

/// Characters that are word characters for exactly one of Python and the
/// `regex` crate (combining marks, superscript digits, joiners, ...).
fn word_mismatch() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"[[[\p{L}\p{N}_]--\w][\w--[\p{L}\p{N}_]]]")
            .unwrap_or_else(|_| regex::Regex::new(r"[^\x00-\x7F]").expect("static regex"))
    })
}

impl PyRegex {
    pub fn new(pattern: &str) -> Result<PyRegex, CompileError> {
        PyRegex::with_step_limit(pattern, STEP_LIMIT)
    }

    /// Like [`PyRegex::new`], with another step limit for the backtracking
    /// engine (`--regex-step-limit`).
    pub fn with_step_limit(pattern: &str, step_limit: usize) -> Result<PyRegex, CompileError> {
        let superset = match translate::translate(pattern, Mode::Relaxed)? {
            Translated::Pattern(o) => o.pattern,
            Translated::NeedsBacktracking(_) => String::from("(?s:.*)"),
        };
        let engine = match translate::translate(pattern, Mode::Linear)? {
            Translated::Pattern(Output {
                pattern: linear,
                end_anchor,
                unicode_word_boundary,
            }) => {
                let (ascii, unicode) = build_programs(linear)?;
                let unicode = Box::new(unicode);
                let exact_word = if unicode_word_boundary {
                    Some(Box::new(LazyExact {
                        pattern: exact(pattern)?,
                        step_limit,
                        compiled: OnceLock::new(),
                    }))
                } else {
                    None
                };
                Engine::Linear {
                    ascii,
                    unicode,
                    end_anchor,
                    exact_word,
                }
            }
            Translated::NeedsBacktracking(reason) => Engine::Backtracking {
                re: build_fancy(&exact(pattern)?, step_limit)?,
                reason,
            },
        };
        Ok(PyRegex {
            source: pattern.to_string(),
            engine,
            superset,
        })
    }

    /// Checks that the full-Unicode program (built on first need) compiles,
    /// so that a pattern too large for the linear engine is reported at
    /// load. The program built here is dropped: memory stays as small as
    /// for the rules that never see non-ASCII text.
    pub fn compile_unicode(&self) -> Result<(), CompileError> {
        match &self.engine {
            Engine::Linear { unicode, .. } => match unicode.compiled.get() {
                Some(done) => done.as_ref().map(|_| ()).map_err(Clone::clone),
                None => build_linear(&unicode.pattern).map(drop),
            },
            Engine::Backtracking { .. } => Ok(()),
        }
    }

    /// The Python source of the pattern.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn engine(&self) -> EngineKind {
        match self.engine {
            Engine::Linear { .. } => EngineKind::Linear,
            Engine::Backtracking { .. } => EngineKind::Backtracking,
        }
    }

    /// Why the pattern needs the backtracking engine, if it does.
    pub fn backtracking_reason(&self) -> Option<&'static str> {
        match self.engine {
            Engine::Backtracking { reason, .. } => Some(reason),
            Engine::Linear { .. } => None,
        }
    }

    /// A pattern in `regex` syntax that matches at least every string this
    /// one matches (used to derive prefilter literals).
    pub fn superset_pattern(&self) -> &str {
        &self.superset
    }

    /// Runs a search with Python's semantics: the exact engine where the
    /// linear one could differ (word boundaries next to some non-ASCII
    /// characters), and `$` also just before a final newline.
    fn search<'h, T>(
        &self,
        haystack: &'h str,
        linear: impl Fn(&LinearRegex, &'h str) -> Option<T>,
        exact: impl Fn(&fancy_regex::Regex, &'h str) -> Result<Option<T>, fancy_regex::Error>,
    ) -> Result<Option<T>, SearchAbandoned> {
        match &self.engine {
            Engine::Linear {
                ascii,
                unicode,
                end_anchor,
                exact_word,
            } => {
                let re = if haystack.is_ascii() {
                    ascii
                } else {
                    if let Some(lazy) = exact_word {
                        if word_mismatch().is_match(haystack) {
                            if let Some(re) = lazy.get() {
                                return exact(re, haystack).map_err(|_| SearchAbandoned::StepLimit);
                            }
                        }
                    }
                    unicode.get().map_err(|_| SearchAbandoned::TooLarge)?
                };
                if let Some(found) = linear(re, haystack) {
                    return Ok(Some(found));
                }
                if *end_anchor {
                    if let Some(stripped) = haystack.strip_suffix('\n') {
                        return Ok(linear(re, stripped));
                    }
                }
                Ok(None)
            }
            Engine::Backtracking { re, .. } => {
                exact(re, haystack).map_err(|_| SearchAbandoned::StepLimit)
            }
        }
    }

    /// `is_match` with the Unicode program whatever the haystack (the
    /// reference the ASCII program is checked against).
    #[cfg(test)]
    fn is_match_with_unicode_program(&self, haystack: &str) -> bool {
        let Engine::Linear {
            unicode,
            end_anchor,
            exact_word,
            ..
        } = &self.engine
        else {
            return self.is_match(haystack).unwrap_or(false);
        };
        if exact_word.is_some() && word_mismatch().is_match(haystack) {
            // Both programs defer to the exact engine here.
            return self.is_match(haystack).unwrap_or(false);
        }
        let Ok(re) = unicode.get() else {
            return false;
        };
        re.is_match(haystack)
            || (*end_anchor && haystack.strip_suffix('\n').is_some_and(|h| re.is_match(h)))
    }

    /// Python's `re.search(pattern, haystack) is not None`.
    pub fn is_match(&self, haystack: &str) -> Result<bool, SearchAbandoned> {
        self.search(
            haystack,
            |re, h| re.is_match(h).then_some(()),
            |re, h| re.is_match(h).map(|m| m.then_some(())),
        )
        .map(|m| m.is_some())
    }

    /// The text of the leftmost match, as `re.search(...).group(0)`. A match
    /// abandoned at the step limit counts as none.
    pub fn find<'h>(&self, haystack: &'h str) -> Option<&'h str> {
        self.search(
            haystack,
            |re, h| re.find(h).and_then(|m| h.get(m.range())),
            |re, h| re.find(h).map(|m| m.map(|m| m.as_str())),
        )
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, h: &str) -> bool {
        PyRegex::new(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .is_match(h)
            .unwrap()
    }

    #[test]
    fn ignorecase_does_not_change_word_ness() {
        // CPython 3.11: the word test of `\b`, `\w`, `\W` ignores IGNORECASE.
        // U+0345 folds to a Greek iota but is not a word character.
        assert!(m(r"(?i)\bnmap\b", "nmap\u{345} -sS x"));
        assert!(m(r"(?i)\b(?:sqlmap|nikto)\b", "NIKTO\u{345}"));
        assert!(!m(r"(?i)\w", "\u{345}"));
        assert!(m(r"(?i)\W", "\u{345}"));
        assert!(!m(r"(?i)[\wé]", "\u{345}"));
        assert!(m(r"(?i)[\wé]", "É"));
        assert!(m(r"(?i)[^\wé]", "\u{345}"));
        assert!(!m(r"(?i)[^\wé]", "É"));
        assert!(m(r"(?i)[\wé]", "ΐ"));
        // ASCII mode: the Kelvin sign and long s are not ASCII word characters.
        assert!(!m(r"(?ai)\w", "\u{212A}"));
        assert!(!m(r"(?ai)[\wé]", "\u{17F}"));
        assert!(m(r"(?ai)[\wz]", "Z"));
        // Exact (backtracking) engine, same rule.
        assert!(m(r"(?i)(?=x)\bnmap\b|\bnmap\b(?<=p)", "nmap\u{345}"));
    }

    #[test]
    fn unicode_16_tables_deviation() {
        // README, deviations: the `regex` crate's Unicode 16 tables. CPython
        // 3.11 (Unicode 14) has U+1E5D0 unassigned (not a word character)
        // and no case pair U+1C89/U+1C8A; newer Pythons and we do.
        assert!(m(r"\w", "\u{1E5D0}"));
        assert!(m(r"\bx", "\u{1E5D0}\u{1E5D0} x"));
        assert!(m(r"(?i)\u1C89", "\u{1C8A}"));
    }

    #[test]
    fn no_character_changes_word_ness_under_ignorecase() {
        // Every code point: `(?i)\w` and `\w` agree, as in Python.
        let plain = PyRegex::new(r"\A\w\Z").unwrap();
        let folded = PyRegex::new(r"(?i)\A\w\Z").unwrap();
        let boundary = PyRegex::new(r"(?i)\Ax\b").unwrap();
        for c in (0..0x11_0000u32).filter_map(char::from_u32) {
            let h = c.to_string();
            let w = plain.is_match(&h).unwrap();
            assert_eq!(folded.is_match(&h).unwrap(), w, "U+{:04X}", c as u32);
            assert_eq!(
                boundary.is_match(&format!("x{h}")).unwrap(),
                !w,
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn dollar_matches_before_a_final_newline() {
        assert!(m(r".*-confg$", "R1-confg"));
        assert!(m(r".*\.cfg$", "x.cfg\n"));
        assert!(!m(r".*\.cfg$", "x.cfg\n\n"));
        assert!(!m(r"a$", "a\nb"));
        assert!(m(r"(?m)a$", "a\nb"));
        assert!(!m(r"a\Z", "a\n"));
        assert!(m(r"a\Z", "a"));
    }

    #[test]
    fn dollar_then_word_boundary_sees_the_newline() {
        // Python: lsb_release(?:\s|$)\b matches "lsb_release\n" ($ before the
        // final newline, then \b between 'e' and '\n').
        assert!(m(r"\blsb_release(?:\s|$)\b", "lsb_release\n"));
        assert!(m(r"\blsb_release(?:\s|$)\b", "lsb_release"));
        assert!(!m(r"\blsb_release(?:\s|$)\b", "lsb_release -a"));
    }

    #[test]
    fn python_whitespace_includes_information_separators() {
        for c in ['\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}'] {
            let h = format!("nc{c}-e /bin/sh");
            assert!(m(r"nc\s+-e", &h), "{c:?}");
            assert!(!m(r"nc\S+-e", &h), "{c:?}");
            assert!(m(r"nc[\s]+-e", &h), "{c:?}");
        }
    }

    #[test]
    fn lookahead_falls_back_to_backtracking() {
        let r = PyRegex::new(r"\bfind\s+/(?:home|etc|var|opt|root|tmp|usr)?(?=\s|/|$)").unwrap();
        assert_eq!(r.engine(), EngineKind::Backtracking);
        assert!(r.is_match("find / -name x").unwrap());
        assert!(r.is_match("find /etc").unwrap());
        assert!(r.is_match("find /etc\n").unwrap());
        assert!(!r.is_match("find /etcx").unwrap());
    }

    #[test]
    fn escaped_underscore_and_bare_brace() {
        assert!(m(r"FLUSH\_ALL", "FLUSH_ALL"));
        assert!(m(
            r"\$\{(?:jndi|\${[^}]*}):(?:ldap)s?://",
            "${${lower:j}:ldap://x"
        ));
        assert!(m(
            r"\$\{(?:jndi|\${[^}]*}):(?:ldap)s?://",
            "/?q=${jndi:ldap://e/a}"
        ));
        assert!(m(r"a{", "a{"));
        assert!(m(r"a{1,x}", "a{1,x}"));
    }

    #[test]
    fn ignorecase_dotted_and_dotless_i() {
        assert!(m(r"(?i)nikto", "N\u{130}KTO"));
        assert!(m(r"(?i)nikto", "n\u{131}kto"));
        assert!(m(r"(?i)[h-j]", "\u{131}"));
        assert!(!m(r"nikto", "n\u{131}kto"));
    }

    #[test]
    fn python_word_boundary_on_non_ascii() {
        // U+00B2 SUPERSCRIPT TWO is alphanumeric in Python, not \w in Rust.
        assert!(!m(r"\bx\b", "x\u{b2}"));
        assert!(m(r"\bx\b", "x y"));
        // A combining mark is a word character for Rust, not for Python.
        assert!(m(r"x\b", "x\u{301}"));
    }

    #[test]
    fn dot_does_not_match_newline_but_negated_class_does() {
        assert!(!m(r"a.b", "a\nb"));
        assert!(m(r"a[^x]b", "a\nb"));
        assert!(m(r"(?s)a.b", "a\nb"));
    }

    #[test]
    fn backreferences_and_atomic_groups() {
        assert!(m(r"(a)\1", "aa"));
        assert!(m(r"(?P<x>ab)(?P=x)", "abab"));
        assert!(!m(r"(?>a+)a", "aaa"));
        assert!(m(r"a++b", "aab"));
    }

    #[test]
    fn catastrophic_backtracking_hits_the_step_limit() {
        let r = PyRegex::new(r"(?:(a)\1?)+(?=b)c").unwrap();
        assert_eq!(r.engine(), EngineKind::Backtracking);
        let hay = "a".repeat(40);
        assert_eq!(r.is_match(&hay), Err(SearchAbandoned::StepLimit));
    }

    #[test]
    fn non_ascii_haystacks_use_the_unicode_program() {
        // Python's classes are Unicode; the ASCII program alone would miss these.
        assert!(m(r"^\w+$", "été"));
        assert!(m(r"a\sb", "a\u{a0}b"));
        assert!(m(r"^\d$", "\u{663}"));
        assert!(m(r"(?i)k", "\u{212a}"));
        assert!(!m(r"^\W$", "é"));
        // ... and the ASCII one still decides ASCII haystacks, even when a
        // class has no ASCII member left.
        assert!(m(r"^\w+$", "ete"));
        assert!(!m(r"^\w+$", "e-e"));
        assert!(!m(r"[éè]x", "ex"));
        assert!(m(r"[éè]x", "éx"));
        assert!(m(r"[éè]?x", "ex"));
    }

    #[test]
    fn a_full_program_too_large_to_build_abandons_non_ascii_searches() {
        // Built by hand: the estimate would have built this one at load.
        let (ascii, _) = build_programs("xyz".into()).unwrap();
        let r = PyRegex {
            source: String::new(),
            engine: Engine::Linear {
                ascii,
                unicode: Box::new(LazyUnicode {
                    pattern: r"\w{1000}|xyz".into(),
                    compiled: OnceLock::new(),
                }),
                end_anchor: false,
                exact_word: None,
            },
            superset: String::new(),
        };
        assert_eq!(r.is_match("xyz"), Ok(true));
        assert_eq!(r.is_match("été xyz"), Err(SearchAbandoned::TooLarge));
        assert!(r.compile_unicode().is_err());
        assert!(PyRegex::new(r"\w{1000}|xyz").is_err());
    }

    /// Pieces of patterns the linear engine runs.
    const PIECES: [&str; 14] = [
        r"\w", r"\W", r"\d", r"\s", r"\S", r"\b", r"\B", ".", "[^a]", "a", "é", "(?:k|é)", "+", "*",
    ];
    /// Characters of haystacks: ASCII, and non-ASCII with differing classes.
    const CHARS: [char; 12] = [
        'a', 'k', 'K', '1', ' ', '-', '\n', 'é', '\u{a0}', '\u{212a}', '\u{663}', '\u{301}',
    ];

    proptest::proptest! {
        /// The ASCII program and the Unicode one agree on every ASCII
        /// haystack, so choosing by haystack never changes a result.
        #[test]
        fn ascii_program_agrees_with_the_unicode_one(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES.to_vec()), 1..6),
            hay in proptest::collection::vec(proptest::sample::select(CHARS.to_vec()), 0..12),
            nocase in proptest::bool::ANY,
        ) {
            let mut pattern = String::from(if nocase { "(?i)" } else { "" });
            // A repetition needs something to repeat (not an assertion,
            // not another repetition).
            let mut repeatable = false;
            for p in pieces {
                let quantifier = matches!(p, "+" | "*");
                if quantifier && !repeatable {
                    continue;
                }
                repeatable = !quantifier && !matches!(p, r"\b" | r"\B");
                pattern.push_str(p);
            }
            let r = PyRegex::new(&pattern).unwrap();
            let Engine::Linear { ascii, unicode, .. } = &r.engine else {
                panic!("{pattern}: not linear");
            };
            let unicode = unicode.get().unwrap();
            let hay: String = hay.into_iter().collect();
            let ascii_only: String = hay.chars().filter(char::is_ascii).collect();
            proptest::prop_assert_eq!(
                ascii.is_match(&ascii_only),
                unicode.is_match(&ascii_only),
                "{} on {:?}", pattern, ascii_only
            );
            proptest::prop_assert_eq!(
                r.is_match(&hay).unwrap(),
                r.is_match_with_unicode_program(&hay),
                "{} on {:?}", pattern, hay
            );
        }
    }
}
