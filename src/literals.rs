//! Required literals: for a regex, a small set of strings one of which every
//! match must contain. The prefilter runs an Aho-Corasick automaton over
//! these so an event only evaluates the rules that can match it.
//!
//! Literals are ASCII-lowercased (and so must the haystack be): lowercasing
//! ASCII bytes maps every occurrence of a string to an occurrence of its
//! lowercased form, so containment is preserved and one case-sensitive
//! automaton serves case-insensitive patterns too.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Largest literal set kept while combining.
const MAX_SET: usize = 64;
/// Largest class expanded into single-character literals.
const MAX_CLASS: usize = 8;
/// Shortest literal worth prefiltering on.
const MIN_USEFUL_LEN: usize = 2;

type Set = Vec<Vec<u8>>;

#[derive(Debug, Clone, Default)]
struct Info {
    /// Every string the node can match (lowercased), when small and known.
    exact: Option<Set>,
    /// A set one member of which every match of the node contains.
    required: Option<Set>,
}

impl Info {
    fn best(&self) -> Option<&Set> {
        match (&self.exact, &self.required) {
            (Some(e), Some(r)) => Some(if score(e) >= score(r) { e } else { r }),
            (Some(e), None) => Some(e),
            (None, r) => r.as_ref(),
        }
    }
}

/// Quality of a literal set: longer shortest member first, then fewer members.
fn score(set: &Set) -> (usize, isize) {
    let min = set.iter().map(Vec::len).min().unwrap_or(0);
    (min, -(set.len() as isize))
}

fn better(a: Option<Set>, b: Option<&Set>) -> Option<Set> {
    match (a, b) {
        (None, None) => None,
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b.clone()),
        (Some(a), Some(b)) => Some(if score(b) > score(&a) { b.clone() } else { a }),
    }
}

fn dedup(mut set: Set) -> Set {
    set.sort();
    set.dedup();
    set
}

fn lower(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

fn cross(a: &Set, b: &Set) -> Option<Set> {
    if a.len().saturating_mul(b.len()) > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(dedup(out))
}

fn class_set(class: &Class) -> Option<Set> {
    let mut out = Vec::new();
    match class {
        Class::Unicode(c) => {
            for r in c.ranges() {
                let n = (r.end() as u32).saturating_sub(r.start() as u32) as usize + 1;
                if out.len() + n > MAX_CLASS * 4 {
                    return None;
                }
                for cp in (r.start() as u32)..=(r.end() as u32) {
                    if let Some(ch) = char::from_u32(cp) {
                        let mut buf = [0u8; 4];
                        out.push(lower(ch.encode_utf8(&mut buf).as_bytes()));
                    }
                }
            }
        }
        Class::Bytes(c) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    out.push(vec![b.to_ascii_lowercase()]);
                    if out.len() > MAX_CLASS * 4 {
                        return None;
                    }
                }
            }
        }
    }
    let out = dedup(out);
    if out.is_empty() || out.len() > MAX_CLASS {
        None
    } else {
        Some(out)
    }
}

fn analyze(hir: &Hir) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info {
            exact: Some(vec![Vec::new()]),
            required: None,
        },
        HirKind::Literal(lit) => Info {
            exact: Some(vec![lower(&lit.0)]),
            required: None,
        },
        HirKind::Class(c) => Info {
            exact: class_set(c),
            required: None,
        },
        HirKind::Capture(cap) => analyze(&cap.sub),
        HirKind::Repetition(rep) => {
            if rep.min == 0 {
                return Info::default();
            }
            let sub = analyze(&rep.sub);
            let exact = match (&sub.exact, rep.max) {
                (Some(e), Some(max)) if max == rep.min && rep.min <= 3 => {
                    let mut acc = vec![Vec::new()];
                    let mut ok = true;
                    for _ in 0..rep.min {
                        match cross(&acc, e) {
                            Some(next) => acc = next,
                            None => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    ok.then_some(acc)
                }
                _ => None,
            };
            Info {
                exact,
                required: sub.best().cloned(),
            }
        }
        HirKind::Concat(subs) => {
            let mut candidates: Option<Set> = None;
            let mut run: Option<Set> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            for sub in subs {
                let info = analyze(sub);
                match &info.exact {
                    Some(e) => {
                        run = match run.take() {
                            Some(r) => match cross(&r, e) {
                                Some(next) => Some(next),
                                None => {
                                    all_exact = false;
                                    candidates = better(candidates, Some(&r));
                                    Some(e.clone())
                                }
                            },
                            None => Some(e.clone()),
                        };
                    }
                    None => {
                        all_exact = false;
                        if let Some(r) = run.take() {
                            candidates = better(candidates, Some(&r));
                        }
                        candidates = better(candidates, info.required.as_ref());
                    }
                }
            }
            let exact = if all_exact { run.clone() } else { None };
            if let Some(r) = run {
                candidates = better(candidates, Some(&r));
            }
            Info {
                exact,
                required: candidates,
            }
        }
        HirKind::Alternation(subs) => {
            let infos: Vec<Info> = subs.iter().map(analyze).collect();
            let exact = if infos.iter().all(|i| i.exact.is_some()) {
                let all: Set = infos
                    .iter()
                    .flat_map(|i| i.exact.clone().unwrap_or_default())
                    .collect();
                let all = dedup(all);
                (all.len() <= MAX_SET).then_some(all)
            } else {
                None
            };
            let mut union = Vec::new();
            let mut ok = true;
            for i in &infos {
                match i.best() {
                    Some(s) if !s.iter().any(Vec::is_empty) => union.extend(s.iter().cloned()),
                    _ => {
                        ok = false;
                        break;
                    }
                }
            }
            let union = dedup(union);
            Info {
                exact,
                required: (ok && union.len() <= MAX_SET).then_some(union),
            }
        }
    }
}

/// Literals (ASCII-lowercased) one of which every match of `pattern` (in
/// `regex` crate syntax) contains; `None` when no useful set exists.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let info = analyze(&hir);
    let best = info.best()?.clone();
    let useful = !best.is_empty() && best.iter().all(|s| s.len() >= MIN_USEFUL_LEN);
    useful.then_some(best)
}

/// Literals for a plain string that must occur in a haystack (`contains`,
/// `equals` and friends), honouring `nocase`.
///
/// With `nocase` the comparison is on Unicode lowercase. A few non-ASCII
/// characters lowercase to ASCII (`K` KELVIN SIGN to `k`, `İ` to `i` plus a
/// combining dot), so those letters cannot be relied on in the ASCII-lowered
/// haystack: the literal is the longest run without them.
pub fn string_literal(value: &str, nocase: bool) -> Option<Vec<u8>> {
    let lit = if nocase {
        let folded: String = value.chars().flat_map(char::to_lowercase).collect();
        if !folded.is_ascii() {
            // Keep the longest ASCII run without k/i.
            longest_run(&folded, |c| c.is_ascii() && c != 'k' && c != 'i')
        } else {
            longest_run(&folded, |c| c != 'k' && c != 'i')
        }
    } else {
        value.to_string()
    };
    let lit = lower(lit.as_bytes());
    (lit.len() >= MIN_USEFUL_LEN).then_some(lit)
}

fn longest_run(s: &str, keep: impl Fn(char) -> bool) -> String {
    let mut best = String::new();
    let mut cur = String::new();
    for c in s.chars() {
        if keep(c) {
            cur.push(c);
        } else {
            if cur.len() > best.len() {
                best = std::mem::take(&mut cur);
            }
            cur.clear();
        }
    }
    if cur.len() > best.len() {
        best = cur;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|s| {
            s.into_iter()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect()
        })
    }

    #[test]
    fn alternation_of_words() {
        let l = lits(r"(?i)\b(sqlmap|nikto)\b").unwrap();
        assert!(l.contains(&"sqlmap".to_string()), "{l:?}");
        assert!(l.contains(&"nikto".to_string()), "{l:?}");
    }

    #[test]
    fn picks_the_longest_required_piece() {
        let l = lits(r"\b(cat|less)\s+(?:[^|;]*\s)?/etc/passwd\b").unwrap();
        assert_eq!(l, vec!["/etc/passwd".to_string()]);
    }

    #[test]
    fn optional_parts_give_nothing() {
        assert_eq!(lits(r"a?b*"), None);
        assert_eq!(lits(r"(?s:.*)"), None);
        assert_eq!(lits(r"x|y.*"), None);
    }

    #[test]
    fn nocase_strings_skip_unicode_folding_letters() {
        assert_eq!(string_literal("NIKTO", true), Some(b"to".to_vec()));
        assert_eq!(string_literal("wget", true), Some(b"wget".to_vec()));
        assert_eq!(string_literal("Wget", false), Some(b"wget".to_vec()));
    }
}
