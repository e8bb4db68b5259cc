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
    fn structure_and_literals_are_kept() {
        assert_restricts(r"(a|bc)+x{2,3}?^$", r"(a|bc)+x{2,3}?^$");
        assert_restricts(r"é|(?:q\w)*", r"é|(?:q[0-9A-Za-z_])*");
    }
}
