//! Translation of Python `re` syntax into the syntax of Rust's regex engines.
//!
//! DECNET's rules are Python regular expressions and must mean exactly what
//! they mean in CPython's `re` module. This module reads a Python pattern and
//! writes it out again in one of three flavours ([`Mode`]):
//!
//! * `Linear` for the `regex` crate (linear time). Constructs that engine
//!   cannot express (look-around, back-references, atomic groups, possessive
//!   quantifiers, conditionals) make the translation fail with
//!   [`Translated::NeedsBacktracking`].
//! * `Exact` for `fancy-regex` (backtracking, with a step limit). Every Python
//!   construct is expressed exactly, including `$` and `\b`.
//! * `Relaxed` for literal extraction: a `regex`-crate pattern whose language
//!   is a superset of the Python pattern's (look-around dropped, back-references
//!   widened), so literals it requires are required by the original too.

use std::fmt;

/// Which target flavour to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Linear,
    Exact,
    Relaxed,
}

/// A Python pattern that Python's `re` itself would reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Character offset in the pattern.
    pub offset: usize,
    pub message: String,
}

impl std::error::Error for SyntaxError {}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.offset)
    }
}

/// The outcome of a translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translated {
    Pattern(Output),
    /// Only in `Linear` mode: the pattern uses a construct that needs a
    /// backtracking engine; the string names it.
    NeedsBacktracking(&'static str),
}

/// A translated pattern and what the caller must know to run it exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub pattern: String,
    /// Linear mode: the pattern has a non-MULTILINE `$`, written as `\z`.
    /// Python's `$` also matches just before a final `\n`; the caller emulates
    /// that by also searching the haystack without its final `\n`.
    pub end_anchor: bool,
    /// Linear mode: the pattern uses `\b` or `\B` in Unicode mode. The `regex`
    /// crate's word characters differ from Python's for a few non-ASCII
    /// characters; the caller checks haystacks for them.
    pub unicode_word_boundary: bool,
}

/// Python's word characters (`str.isalnum()` or `_`), as a class body.
const PY_WORD: &str = r"\p{L}\p{N}_";
const PY_WORD_ASCII: &str = r"A-Za-z0-9_";
/// Python's `\s` for `str` patterns: Unicode whitespace plus U+001C..U+001F.
const PY_SPACE: &str = r"\s\x1C-\x1F";
const PY_SPACE_ASCII: &str = r"\t\n\x0B\x0C\r ";

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    ignore_case: bool,
    multiline: bool,
    dotall: bool,
    verbose: bool,
    ascii: bool,
}

/// Shape of the pattern, recorded while writing, used to decide whether the
/// `$` emulation of `Output::end_anchor` is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Open,
    Close { quantified: bool },
    Alt,
    ZeroWidth,
    Dollar,
    Consume,
}

pub fn translate(pattern: &str, mode: Mode) -> Result<Translated, SyntaxError> {
    let mut t = Translator {
        chars: pattern.chars().collect(),
        pos: 0,
        mode,
        out: String::with_capacity(pattern.len() + 16),
        flags: Flags::default(),
        flag_stack: Vec::new(),
        shape: Vec::new(),
        end_anchor: false,
        big_z: false,
        word_boundary: false,
        group_count: 0,
    };
    match t.run() {
        Ok(()) => {}
        Err(Stop::Syntax(e)) => return Err(e),
        Err(Stop::Backtrack(what)) => return Ok(Translated::NeedsBacktracking(what)),
    }
    if mode == Mode::Linear && t.end_anchor {
        if t.big_z {
            return Ok(Translated::NeedsBacktracking(r"`$` together with `\Z`"));
        }
        if !dollar_is_final(&t.shape) {
            return Ok(Translated::NeedsBacktracking(
                "`$` followed by something that consumes text",
            ));
        }
    }
    Ok(Translated::Pattern(Output {
        pattern: t.out,
        end_anchor: t.end_anchor && mode == Mode::Linear,
        unicode_word_boundary: t.word_boundary && mode == Mode::Linear,
    }))
}

/// True when nothing that can consume text may follow any `$`: then a match
/// that uses `$` just before a final `\n` is also a match of the haystack
/// without that `\n`, and the two-search emulation is exact.
fn dollar_is_final(shape: &[Shape]) -> bool {
    for (i, s) in shape.iter().enumerate() {
        if *s != Shape::Dollar {
            continue;
        }
        let mut j = i + 1;
        loop {
            match shape.get(j) {
                None => break,
                Some(Shape::ZeroWidth | Shape::Dollar) => j += 1,
                Some(Shape::Close { quantified }) => {
                    if *quantified {
                        return false;
                    }
                    j += 1;
                }
                Some(Shape::Alt) => {
                    // Skip the other alternatives up to the end of this group.
                    let mut depth = 0usize;
                    j += 1;
                    loop {
                        match shape.get(j) {
                            None => break,
                            Some(Shape::Open) => depth += 1,
                            Some(Shape::Close { .. }) if depth == 0 => break,
                            Some(Shape::Close { .. }) => depth -= 1,
                            _ => {}
                        }
                        j += 1;
                    }
                }
                Some(Shape::Open | Shape::Consume) => return false,
            }
        }
    }
    true
}

enum Stop {
    Syntax(SyntaxError),
    Backtrack(&'static str),
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    mode: Mode,
    out: String,
    flags: Flags,
    /// Flags to restore when each open group closes.
    flag_stack: Vec<Flags>,
    shape: Vec<Shape>,
    end_anchor: bool,
    big_z: bool,
    word_boundary: bool,
    group_count: usize,
}

impl Translator {
    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, Stop> {
        Err(Stop::Syntax(SyntaxError {
            offset,
            message: message.into(),
        }))
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.pos + k).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn fancy(&mut self, what: &'static str) -> Result<(), Stop> {
        if self.mode == Mode::Linear {
            Err(Stop::Backtrack(what))
        } else {
            Ok(())
        }
    }

    fn run(&mut self) -> Result<(), Stop> {
        self.global_flags()?;
        while self.pos < self.chars.len() {
            self.item()?;
        }
        if !self.flag_stack.is_empty() {
            return self.err(self.chars.len(), "missing ), unterminated subpattern");
        }
        Ok(())
    }

    /// Python 3.11 only accepts global flags at the very start.
    fn global_flags(&mut self) -> Result<(), Stop> {
        while self.peek() == Some('(') && self.peek_at(1) == Some('?') {
            let save = self.pos;
            self.pos += 2;
            let mut letters = String::new();
            while let Some(c) = self.peek() {
                if "aiLmsux".contains(c) {
                    letters.push(c);
                    self.pos += 1;
                } else {
                    break;
                }
            }
            if letters.is_empty() || !self.eat(')') {
                self.pos = save;
                return Ok(());
            }
            for c in letters.chars() {
                self.set_flag(c, true, save)?;
            }
            let mut rust = String::new();
            if self.flags.ignore_case {
                rust.push('i');
            }
            if self.flags.multiline {
                rust.push('m');
            }
            if self.flags.dotall {
                rust.push('s');
            }
            if !rust.is_empty() {
                self.out.push_str(&format!("(?{rust})"));
            }
        }
        Ok(())
    }

    fn set_flag(&mut self, c: char, on: bool, at: usize) -> Result<(), Stop> {
        match c {
            'i' => self.flags.ignore_case = on,
            'm' => self.flags.multiline = on,
            's' => self.flags.dotall = on,
            'x' => self.flags.verbose = on,
            'a' => self.flags.ascii = on,
            'u' => self.flags.ascii = false,
            'L' => {
                return self.err(
                    at,
                    "bad inline flags: cannot use 'L' flag with a str pattern",
                )
            }
            _ => return self.err(at, format!("unknown flag {c:?}")),
        }
        Ok(())
    }

    fn item(&mut self) -> Result<(), Stop> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(());
        };
        self.pos += 1;
        if self.flags.verbose {
            if c.is_whitespace() {
                return Ok(());
            }
            if c == '#' {
                while let Some(d) = self.peek() {
                    self.pos += 1;
                    if d == '\n' {
                        break;
                    }
                }
                return Ok(());
            }
        }
        match c {
            '(' => self.group(start),
            ')' => {
                let Some(saved) = self.flag_stack.pop() else {
                    return self.err(start, "unbalanced parenthesis");
                };
                self.flags = saved;
                self.out.push(')');
                let quantified = self.quantifier()?;
                self.shape.push(Shape::Close { quantified });
                Ok(())
            }
            '|' => {
                self.out.push('|');
                self.shape.push(Shape::Alt);
                Ok(())
            }
            '^' => {
                self.out.push('^');
                self.shape.push(Shape::ZeroWidth);
                self.no_quantifier(start)
            }
            '$' => {
                if self.flags.multiline {
                    self.out.push('$');
                    self.shape.push(Shape::ZeroWidth);
                } else {
                    match self.mode {
                        Mode::Linear => self.out.push_str(r"\z"),
                        Mode::Exact => self.out.push_str(r"(?=\n?\z)"),
                        Mode::Relaxed => self.out.push_str(r"(?:\n?\z)?"),
                    }
                    self.end_anchor = true;
                    self.shape.push(Shape::Dollar);
                }
                self.no_quantifier(start)
            }
            '.' => {
                self.out.push('.');
                self.atom_end()
            }
            '[' => {
                self.class(start)?;
                self.atom_end()
            }
            '\\' => self.escape(start),
            '*' | '+' | '?' => self.err(start, "nothing to repeat"),
            '{' => {
                self.pos = start;
                if self.quantifier_spec().is_some() {
                    return self.err(start, "nothing to repeat");
                }
                self.pos = start + 1;
                self.literal('{');
                self.atom_end()
            }
            c => {
                self.literal(c);
                self.atom_end()
            }
        }
    }

    /// After an atom: an optional quantifier.
    fn atom_end(&mut self) -> Result<(), Stop> {
        self.shape.push(Shape::Consume);
        self.quantifier()?;
        Ok(())
    }

    /// Zero-width assertions may be quantified in Python (a no-op), but the
    /// regex crate accepts that too, so just pass any quantifier along.
    fn no_quantifier(&mut self, _start: usize) -> Result<(), Stop> {
        self.quantifier()?;
        Ok(())
    }

    /// Parses `{m}`, `{m,}`, `{,n}`, `{m,n}`, `{,}` at `self.pos` (which must
    /// be at `{`) the way Python does. Returns the bounds on success and
    /// leaves `pos` after the `}`; returns `None` and leaves `pos` unchanged
    /// when the brace is a literal.
    fn quantifier_spec(&mut self) -> Option<(Option<u32>, Option<u32>)> {
        let save = self.pos;
        if self.peek() != Some('{') || self.peek_at(1) == Some('}') {
            return None;
        }
        self.pos += 1;
        let mut lo = String::new();
        while let Some(d) = self.peek().filter(char::is_ascii_digit) {
            lo.push(d);
            self.pos += 1;
        }
        let hi = if self.eat(',') {
            let mut hi = String::new();
            while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                hi.push(d);
                self.pos += 1;
            }
            hi
        } else {
            lo.clone()
        };
        if !self.eat('}') {
            self.pos = save;
            return None;
        }
        let lo = if lo.is_empty() { None } else { lo.parse().ok() };
        let hi = if hi.is_empty() { None } else { hi.parse().ok() };
        Some((lo, hi))
    }

    /// Reads an optional quantifier (with `?` lazy or `+` possessive suffix).
    fn quantifier(&mut self) -> Result<bool, Stop> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(false);
        };
        match c {
            '*' | '+' | '?' => {
                self.pos += 1;
                self.out.push(c);
            }
            '{' => match self.quantifier_spec() {
                Some((lo, hi)) => {
                    let lo = lo.unwrap_or(0);
                    if let Some(hi) = hi {
                        if hi < lo {
                            return self.err(start, "min repeat greater than max repeat");
                        }
                        self.out.push_str(&format!("{{{lo},{hi}}}"));
                    } else {
                        self.out.push_str(&format!("{{{lo},}}"));
                    }
                }
                None => return Ok(false),
            },
            _ => return Ok(false),
        }
        if self.eat('?') {
            self.out.push('?');
        } else if self.peek() == Some('+') {
            self.pos += 1;
            self.fancy("a possessive quantifier")?;
            if self.mode == Mode::Exact {
                self.out.push('+');
            }
        }
        if matches!(self.peek(), Some('*' | '+' | '?'))
            || (self.peek() == Some('{') && {
                let save = self.pos;
                let q = self.quantifier_spec().is_some();
                self.pos = save;
                q
            })
        {
            return self.err(self.pos, "multiple repeat");
        }
        Ok(true)
    }

    fn group(&mut self, start: usize) -> Result<(), Stop> {
        if !self.eat('?') {
            self.group_count += 1;
            self.open_group("(")?;
            return Ok(());
        }
        let Some(c) = self.peek() else {
            return self.err(start, "unexpected end of pattern");
        };
        self.pos += 1;
        match c {
            ':' => self.open_group("(?:"),
            'P' => {
                if self.eat('<') {
                    let name = self.group_name('>')?;
                    self.group_count += 1;
                    self.open_group(&format!("(?P<{name}>"))
                } else if self.eat('=') {
                    let name = self.group_name(')')?;
                    self.fancy("a back-reference")?;
                    self.backref(&format!(r"\k<{name}>"));
                    self.atom_end()
                } else {
                    self.err(start, "unknown extension ?P")
                }
            }
            '#' => {
                while let Some(d) = self.peek() {
                    self.pos += 1;
                    if d == ')' {
                        return Ok(());
                    }
                }
                self.err(start, "missing ), unterminated comment")
            }
            '=' | '!' => {
                self.fancy("a look-ahead")?;
                self.lookaround(if c == '=' { "(?=" } else { "(?!" })
            }
            '<' => {
                let kind = self.peek();
                if kind == Some('=') || kind == Some('!') {
                    self.pos += 1;
                    self.fancy("a look-behind")?;
                    self.lookaround(if kind == Some('=') { "(?<=" } else { "(?<!" })
                } else {
                    self.err(start, "unknown extension ?<")
                }
            }
            '>' => {
                self.fancy("an atomic group")?;
                let open = if self.mode == Mode::Exact {
                    "(?>"
                } else {
                    "(?:"
                };
                self.open_group(open)
            }
            '(' => {
                self.fancy("a conditional group")?;
                let mut cond = String::new();
                loop {
                    match self.peek() {
                        Some(')') => {
                            self.pos += 1;
                            break;
                        }
                        Some(d) if d.is_alphanumeric() || d == '_' => {
                            cond.push(d);
                            self.pos += 1;
                        }
                        _ => return self.err(self.pos, "bad character in group name"),
                    }
                }
                if self.mode == Mode::Exact {
                    self.open_group(&format!("(?({cond})"))
                } else {
                    // Relaxed: either branch, as an alternation.
                    self.open_group("(?:")
                }
            }
            c if "aiLmsux-".contains(c) => {
                self.pos -= 1;
                self.scoped_flags(start)
            }
            _ => self.err(start, format!("unknown extension ?{c}")),
        }
    }

    fn scoped_flags(&mut self, start: usize) -> Result<(), Stop> {
        let saved = self.flags;
        let mut on = true;
        let mut rust_on = String::new();
        let mut rust_off = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err(start, "missing -, : or )");
            };
            self.pos += 1;
            match c {
                ':' => break,
                ')' => {
                    return self.err(start, "global flags not at the start of the expression");
                }
                '-' if on => on = false,
                c => {
                    if !on && !"imsx".contains(c) {
                        return self.err(start, "bad inline flags: cannot turn off this flag");
                    }
                    self.set_flag(c, on, start)?;
                    if "ims".contains(c) {
                        if on {
                            rust_on.push(c);
                        } else {
                            rust_off.push(c);
                        }
                    }
                }
            }
        }
        let mut open = String::from("(?");
        open.push_str(&rust_on);
        if !rust_off.is_empty() {
            open.push('-');
            open.push_str(&rust_off);
        }
        open.push(':');
        if open == "(?:" {
            open = "(?:".into();
        }
        // The new flags were already applied; `open_group` saves the outer ones.
        let inner = self.flags;
        self.flags = saved;
        self.open_group(&open)?;
        self.flags = inner;
        Ok(())
    }

    fn open_group(&mut self, open: &str) -> Result<(), Stop> {
        self.flag_stack.push(self.flags);
        self.out.push_str(open);
        self.shape.push(Shape::Open);
        Ok(())
    }

    fn lookaround(&mut self, open: &str) -> Result<(), Stop> {
        if self.mode == Mode::Exact {
            self.open_group(open)
        } else {
            // Relaxed: a look-around is zero-width; allowing it to match
            // anything keeps a superset. Its contents are still parsed (and
            // discarded) so that syntax errors inside it are found.
            let out_len = self.out.len();
            let depth = self.flag_stack.len();
            self.open_group("(?:")?;
            while self.flag_stack.len() > depth {
                if self.pos >= self.chars.len() {
                    return self.err(self.pos, "missing ), unterminated subpattern");
                }
                self.item()?;
            }
            self.out.truncate(out_len);
            self.out.push_str("(?:)");
            Ok(())
        }
    }

    fn backref(&mut self, exact: &str) {
        if self.mode == Mode::Exact {
            self.out.push_str(exact);
        } else {
            self.out.push_str(r"(?s:.*)");
        }
    }

    fn group_name(&mut self, end: char) -> Result<String, Stop> {
        let start = self.pos;
        let mut name = String::new();
        loop {
            match self.peek() {
                Some(c) if c == end => {
                    self.pos += 1;
                    break;
                }
                Some(c) if c.is_alphanumeric() || c == '_' => {
                    name.push(c);
                    self.pos += 1;
                }
                _ => return self.err(start, "bad character in group name"),
            }
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return self.err(start, "bad character in group name");
        }
        Ok(name)
    }

    /// Writes one literal character.
    fn literal(&mut self, c: char) {
        if self.flags.ignore_case && (c == 'i' || c == 'I') && !self.flags.ascii {
            // Python's IGNORECASE also lets i/I match U+0130 and U+0131.
            self.out.push_str(r"[iI\x{130}\x{131}]");
            return;
        }
        push_literal(&mut self.out, c);
    }

    /// The class of `\w` (or `\W`) as it stands inside a bracketed class.
    fn word_class_body(&self, negated: bool) -> String {
        let body = if self.flags.ascii {
            PY_WORD_ASCII
        } else {
            PY_WORD
        };
        if negated {
            format!("[^{body}]")
        } else {
            format!("[{body}]")
        }
    }

    /// `\w` or `\W` outside brackets. Python's word test ignores
    /// IGNORECASE, while the `regex` crate would case-fold the class (and
    /// so count U+0345, which folds to a Greek iota, or the Kelvin sign as
    /// word characters): under `(?i)` the class is written case-sensitive.
    fn word_class(&self, negated: bool) -> String {
        let class = self.word_class_body(negated);
        if self.flags.ignore_case {
            format!("(?-i:{class})")
        } else {
            class
        }
    }

    fn space_class(&self, negated: bool) -> String {
        let body = if self.flags.ascii {
            PY_SPACE_ASCII
        } else {
            PY_SPACE
        };
        if negated {
            format!("[^{body}]")
        } else {
            format!("[{body}]")
        }
    }

    fn digit_class(&self, negated: bool) -> &'static str {
        match (self.flags.ascii, negated) {
            (true, false) => "[0-9]",
            (true, true) => "[^0-9]",
            (false, false) => r"\d",
            (false, true) => r"\D",
        }
    }

    fn word_boundary(&mut self, negated: bool) {
        match self.mode {
            Mode::Linear | Mode::Relaxed => {
                let b = if negated { r"\B" } else { r"\b" };
                if self.flags.ascii {
                    self.out.push_str(&format!("(?-u:{b})"));
                } else {
                    self.out.push_str(b);
                    self.word_boundary = true;
                }
            }
            Mode::Exact => {
                let w = self.word_class(false);
                if negated {
                    self.out
                        .push_str(&format!("(?:(?<={w})(?={w})|(?<!{w})(?!{w}))"));
                } else {
                    self.out
                        .push_str(&format!("(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"));
                }
            }
        }
    }

    fn escape(&mut self, start: usize) -> Result<(), Stop> {
        let Some(c) = self.peek() else {
            return self.err(start, "bad escape (end of pattern)");
        };
        self.pos += 1;
        match c {
            'A' => {
                self.out.push_str(r"\A");
                self.shape.push(Shape::ZeroWidth);
                self.no_quantifier(start)
            }
            'Z' => {
                self.out.push_str(r"\z");
                self.big_z = true;
                self.shape.push(Shape::ZeroWidth);
                self.no_quantifier(start)
            }
            'b' | 'B' => {
                self.word_boundary(c == 'B');
                self.shape.push(Shape::ZeroWidth);
                self.no_quantifier(start)
            }
            'd' | 'D' => {
                let s = self.digit_class(c == 'D');
                self.out.push_str(s);
                self.atom_end()
            }
            'w' | 'W' => {
                let s = self.word_class(c == 'W');
                self.out.push_str(&s);
                self.atom_end()
            }
            's' | 'S' => {
                let s = self.space_class(c == 'S');
                self.out.push_str(&s);
                self.atom_end()
            }
            '1'..='9' => {
                // Octal escape if three octal digits, else a back-reference.
                let d1 = self.peek();
                let d2 = self.peek_at(1);
                if c <= '7'
                    && d1.is_some_and(|d| ('0'..='7').contains(&d))
                    && d2.is_some_and(|d| ('0'..='7').contains(&d))
                {
                    self.pos += 2;
                    let s: String = [c, d1.unwrap_or('0'), d2.unwrap_or('0')].iter().collect();
                    let v = u32::from_str_radix(&s, 8).unwrap_or(0);
                    if v > 0o377 {
                        return self.err(start, "octal escape value outside of range 0-0o377");
                    }
                    self.literal(char::from_u32(v).unwrap_or('\0'));
                    return self.atom_end();
                }
                let mut num = String::from(c);
                if let Some(d) = d1.filter(char::is_ascii_digit) {
                    num.push(d);
                    self.pos += 1;
                }
                let n: usize = num.parse().unwrap_or(0);
                if n > self.group_count {
                    return self.err(start, format!("invalid group reference {n}"));
                }
                self.fancy("a back-reference")?;
                self.backref(&format!(r"\{n}"));
                self.atom_end()
            }
            _ => {
                self.pos -= 1;
                let ch = self.simple_escape(start, false)?;
                self.literal(ch);
                self.atom_end()
            }
        }
    }

    /// Escapes that stand for one character, valid both inside and outside a
    /// class. `pos` is at the character after the backslash.
    fn simple_escape(&mut self, start: usize, in_class: bool) -> Result<char, Stop> {
        let Some(c) = self.peek() else {
            return self.err(start, "bad escape (end of pattern)");
        };
        self.pos += 1;
        let ch = match c {
            'a' => '\x07',
            'f' => '\x0C',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0B',
            'b' if in_class => '\x08',
            'x' => self.hex_escape(start, 2)?,
            'u' => self.hex_escape(start, 4)?,
            'U' => self.hex_escape(start, 8)?,
            'N' => return self.err(start, r"\N{...} named characters are not supported"),
            '0'..='7' => {
                let mut s = String::from(c);
                let max = if c == '0' || in_class { 3 } else { 1 };
                while s.len() < max {
                    match self.peek() {
                        Some(d) if ('0'..='7').contains(&d) => {
                            s.push(d);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                if !in_class && c != '0' {
                    return self.err(start, "invalid group reference");
                }
                let v = u32::from_str_radix(&s, 8).unwrap_or(0);
                if v > 0o377 {
                    return self.err(start, "octal escape value outside of range 0-0o377");
                }
                char::from_u32(v).unwrap_or('\0')
            }
            c if c.is_ascii_alphanumeric() => {
                return self.err(start, format!("bad escape \\{c}"));
            }
            c => c,
        };
        Ok(ch)
    }

    fn hex_escape(&mut self, start: usize, digits: usize) -> Result<char, Stop> {
        let mut s = String::new();
        for _ in 0..digits {
            match self.peek() {
                Some(d) if d.is_ascii_hexdigit() => {
                    s.push(d);
                    self.pos += 1;
                }
                _ => return self.err(start, "incomplete escape"),
            }
        }
        let v = u32::from_str_radix(&s, 16).unwrap_or(u32::MAX);
        match char::from_u32(v) {
            Some(c) => Ok(c),
            None => self.err(start, "bad escape: not a Unicode scalar value"),
        }
    }

    /// Reads a Python character class (after `[`) and writes a `regex` class.
    fn class(&mut self, start: usize) -> Result<(), Stop> {
        let negated = self.eat('^');
        // Literal characters and ranges, then class escapes (`\d`, `\w`, ...).
        let mut body = String::new();
        let mut escapes = String::new();
        let mut has_word = false;
        let mut has_i = false;
        let mut first = true;
        loop {
            let item_start = self.pos;
            let Some(c) = self.peek() else {
                return self.err(start, "unterminated character set");
            };
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            // One endpoint or a class escape.
            let lo = if c == '\\' {
                match self.peek() {
                    Some(e @ ('d' | 'D' | 'w' | 'W' | 's' | 'S')) => {
                        self.pos += 1;
                        if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']') {
                            return self.err(item_start, "bad character range");
                        }
                        let s = match e {
                            'd' | 'D' => self.digit_class(e == 'D').to_string(),
                            'w' | 'W' => {
                                has_word = true;
                                self.word_class_body(e == 'W')
                            }
                            _ => self.space_class(e == 'S'),
                        };
                        escapes.push_str(&s);
                        continue;
                    }
                    Some(e) if e.is_ascii_digit() && !('0'..='7').contains(&e) => {
                        return self.err(item_start, format!("bad escape \\{e}"));
                    }
                    _ => self.simple_escape(item_start, true)?,
                }
            } else {
                c
            };
            // A range?
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|n| n != ']') {
                self.pos += 1;
                let hi_start = self.pos;
                let Some(h) = self.peek() else {
                    return self.err(start, "unterminated character set");
                };
                self.pos += 1;
                let hi = if h == '\\' {
                    if matches!(self.peek(), Some('d' | 'D' | 'w' | 'W' | 's' | 'S')) {
                        return self.err(item_start, "bad character range");
                    }
                    self.simple_escape(hi_start, true)?
                } else {
                    h
                };
                if hi < lo {
                    return self.err(item_start, "bad character range");
                }
                if ('i' >= lo && 'i' <= hi) || ('I' >= lo && 'I' <= hi) {
                    has_i = true;
                }
                push_class_char(&mut body, lo);
                body.push('-');
                push_class_char(&mut body, hi);
            } else {
                if lo == 'i' || lo == 'I' {
                    has_i = true;
                }
                push_class_char(&mut body, lo);
            }
        }
        if has_i && self.flags.ignore_case && !self.flags.ascii {
            body.push_str(r"\x{130}\x{131}");
        }
        // Under IGNORECASE Python folds a class's literals but not its
        // `\w`/`\W` (see `word_class`): fold the literals here and write the
        // whole class case-sensitive.
        let case_sensitive_class = has_word && self.flags.ignore_case;
        if case_sensitive_class && !body.is_empty() {
            body = folded_class_body(&body, self.flags.ascii);
        }
        body.push_str(&escapes);
        if body.is_empty() {
            // Python rejects `[]` (it reads `]` as a literal first), so an
            // empty body can only come from nothing; keep it unmatchable.
            body.push_str(r"\x{0}&&\x{1}");
        }
        if case_sensitive_class {
            self.out.push_str("(?-i:");
        }
        self.out.push('[');
        if negated {
            self.out.push('^');
        }
        self.out.push_str(&body);
        self.out.push(']');
        if case_sensitive_class {
            self.out.push(')');
        }
        Ok(())
    }
}

/// The case-insensitive closure of a class body of literals and ranges (as
/// this module writes them), written out as explicit ranges. ASCII mode
/// folds ASCII letters only, as Python's `(?ai)` does.
fn folded_class_body(body: &str, ascii: bool) -> String {
    use regex_syntax::hir::{Class, HirKind};
    let flags = if ascii { "(?i-u)" } else { "(?i)" };
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(&format!("{flags}[{body}]"));
    let mut out = String::new();
    match hir.as_ref().map(|h| h.kind()) {
        Ok(HirKind::Class(Class::Unicode(c))) => {
            for r in c.iter() {
                push_class_char(&mut out, r.start());
                if r.end() != r.start() {
                    out.push('-');
                    push_class_char(&mut out, r.end());
                }
            }
        }
        Ok(HirKind::Class(Class::Bytes(c))) => {
            for r in c.iter() {
                push_class_char(&mut out, char::from(r.start()));
                if r.end() != r.start() {
                    out.push('-');
                    push_class_char(&mut out, char::from(r.end()));
                }
            }
        }
        // A single folded literal parses as a literal: keep the body.
        _ => out.push_str(body),
    }
    out
}

/// Writes `c` so that the `regex` crate reads it as that literal character.
fn push_literal(out: &mut String, c: char) {
    if c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_whitespace()) {
        out.push(c);
    } else {
        out.push_str(&format!(r"\x{{{:X}}}", c as u32));
    }
}

fn push_class_char(out: &mut String, c: char) {
    push_literal(out, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(p: &str) -> Output {
        match translate(p, Mode::Linear).unwrap() {
            Translated::Pattern(o) => o,
            Translated::NeedsBacktracking(w) => panic!("{p}: needs backtracking: {w}"),
        }
    }

    #[test]
    fn bare_brace_is_literal() {
        let o = linear(r"\$\{(?:jndi|\${[^}]*}):");
        assert!(regex::Regex::new(&o.pattern).is_ok(), "{}", o.pattern);
        assert!(linear("a{").pattern.contains(r"\x{7B}"));
        assert_eq!(linear("a{2,3}").pattern, "a{2,3}");
        assert_eq!(linear("a{,3}").pattern, "a{0,3}");
        assert_eq!(linear("a{2}").pattern, "a{2,2}");
    }

    #[test]
    fn lookaround_needs_backtracking() {
        assert!(matches!(
            translate(r"find(?=\s|$)", Mode::Linear).unwrap(),
            Translated::NeedsBacktracking(_)
        ));
    }

    #[test]
    fn dollar_followed_by_consumer_needs_backtracking() {
        assert!(matches!(
            translate(r"(?:a|$)\s", Mode::Linear).unwrap(),
            Translated::NeedsBacktracking(_)
        ));
        assert!(linear(r"(?:a|$)\b").end_anchor);
        assert!(linear(r"x(?:\s|$)|y(?:\s|$)").end_anchor);
    }

    #[test]
    fn python_errors_are_errors() {
        for p in [
            "(",
            "a)",
            "*a",
            "a**",
            "[a",
            r"\q",
            "a{3,2}",
            r"(?P<1a>x)",
            r"\1",
        ] {
            assert!(
                translate(p, Mode::Linear).is_err(),
                "{p} should be an error"
            );
        }
    }

    #[test]
    fn global_flags_pass_through() {
        assert!(linear("(?i)abc").pattern.starts_with("(?i)"));
        assert_eq!(linear("(?x) a b # c\n").pattern, "ab");
    }
}
