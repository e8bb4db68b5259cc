//! The ASCII restriction of a pattern: the same program with every class cut
//! down to its ASCII members and Unicode word boundaries made ASCII ones.
//!
//! On a haystack that is all ASCII, the restriction matches exactly where the
//! full pattern does: a haystack without non-ASCII characters can never
//! use the non-ASCII members of a class, and ASCII word characters are the
//! same (`[0-9A-Za-z_]`) for Python, Unicode and ASCII word boundaries. Its
//! automata are a fraction of the size of the Unicode ones (Python's `\w`
//! and `\s` are large Unicode classes), so [`super::PyRegex`] compiles it at
//! load time and builds the full program only when a rule first sees
//! non-ASCII text.

use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange};
use regex_syntax::hir::{Hir, HirKind, Look, Repetition};

/// The ASCII restriction of `hir`.
pub fn restrict(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) => hir.clone(),
        HirKind::Class(Class::Unicode(c)) => {
            let mut c = c.clone();
            c.intersect(&ClassUnicode::new([ClassUnicodeRange::new('\0', '\x7f')]));
            Hir::class(Class::Unicode(c))
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut c = c.clone();
            c.intersect(&ClassBytes::new([ClassBytesRange::new(0, 0x7f)]));
            Hir::class(Class::Bytes(c))
        }
        HirKind::Look(look) => Hir::look(ascii_look(*look)),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            sub: Box::new(restrict(&r.sub)),
            ..r.clone()
        }),
        HirKind::Capture(c) => {
            let mut c = c.clone();
            c.sub = Box::new(restrict(&c.sub));
            Hir::capture(c)
        }
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(restrict).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(restrict).collect()),
    }
}

/// A rough upper estimate of the states of the full-Unicode automaton of
/// `hir`: a class costs a few states per range (its UTF-8 sequences), and a
/// counted repetition copies its body once per count. Used to decide
/// whether that automaton may be large enough to build at load time.
pub fn unicode_states_estimate(hir: &Hir) -> usize {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(lit) => lit.0.len(),
        HirKind::Class(Class::Unicode(c)) => c.ranges().len().saturating_mul(4),
        HirKind::Class(Class::Bytes(_)) => 1,
        HirKind::Repetition(r) => {
            let copies = r.max.unwrap_or(r.min).max(r.min).saturating_add(1);
            unicode_states_estimate(&r.sub).saturating_mul(copies as usize)
        }
        HirKind::Capture(c) => unicode_states_estimate(&c.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs
            .iter()
            .map(unicode_states_estimate)
            .fold(0, usize::saturating_add),
    }
}

fn ascii_look(look: Look) -> Look {
    match look {
        Look::WordUnicode => Look::WordAscii,
        Look::WordUnicodeNegate => Look::WordAsciiNegate,
        Look::WordStartUnicode => Look::WordStartAscii,
        Look::WordEndUnicode => Look::WordEndAscii,
        Look::WordStartHalfUnicode => Look::WordStartHalfAscii,
        Look::WordEndHalfUnicode => Look::WordEndHalfAscii,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Hir {
        regex_syntax::Parser::new().parse(p).unwrap()
    }

    fn assert_restricts(full: &str, ascii: &str) {
        assert_eq!(restrict(&parse(full)), parse(ascii), "{full}");
    }

    #[test]
    fn classes_keep_only_their_ascii_members() {
        assert_restricts(r"\w+", r"[0-9A-Za-z_]+");
        assert_restricts(r"\d", r"[0-9]");
        assert_restricts(r"(?i)k", r"[Kk]");
        assert_restricts(r"[^a]", r"[\x00-`b-\x7f]");
        assert_restricts(r"(?s:.)", r"[\x00-\x7f]");
    }

    #[test]
    fn word_boundaries_become_ascii() {
        assert_restricts(r"\bx\B", r"(?-u:\b)x(?-u:\B)");
        assert_restricts(r"\b{start}x\b{end}", r"(?-u:\b{start})x(?-u:\b{end})");
    }

    #[test]
    fn estimates_grow_with_classes_and_counts() {
        let est = |p: &str| unicode_states_estimate(&parse(p));
        assert!(est(r"\w+\s+\d{1,5}") < 20_000);
        assert!(est(r"\w{1000}") > 20_000);
        assert!(est(r"(?:\w\W){30}{30}") > 20_000);
        assert!(est("abc") < est(r"\w"));
    }

    #[test]
    fn structure_and_literals_are_kept() {
        assert_restricts(r"(a|bc)+x{2,3}?^$", r"(a|bc)+x{2,3}?^$");
        assert_restricts(r"é|(?:q\w)*", r"é|(?:q[0-9A-Za-z_])*");
    }
}
