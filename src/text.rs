//! Text for humans: control characters escaped.
//!
//! Event fields, rule files and file names are attacker-influenced; printed
//! raw to a terminal, an ESC sequence could retitle or repaint it, and a
//! newline could forge a log line. Every human-readable output goes through
//! these functions; JSON output stays exact.

use std::borrow::Cow;
use std::fmt::Write as _;

fn needs_escape(c: char, keep_newlines: bool) -> bool {
    match c {
        '\n' | '\t' if keep_newlines => false,
        // C0, DEL, C1, and the bidirectional overrides and isolates that
        // can make a line read differently from what it holds.
        '\0'..='\x1f' | '\x7f'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c, keep_newlines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c, keep_newlines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// One line of output: every control character escaped (`\n`, `\x1b`, …).
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Multi-line text (a rule file): newlines and tabs kept, every other
/// control character escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(line("plain é"), "plain é");
        assert!(matches!(line("plain"), Cow::Borrowed(_)));
        assert_eq!(line("a\x1b]0;owned\x07b"), "a\\x1b]0;owned\\x07b");
        assert_eq!(line("x\ny\r\tz\u{85}"), "x\\ny\\r\\tz\\x85");
        assert_eq!(line("\u{202e}txt"), "\\u{202e}txt");
        assert_eq!(text("a:\n\tb\x1b[2J"), "a:\n\tb\\x1b[2J");
    }
}
