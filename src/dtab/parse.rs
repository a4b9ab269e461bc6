//! The parser: `grammar/dtab.pest` turned into [`Path`], [`Prefix`],
//! [`NameTree`], [`Dentry`] and [`Dtab`], with errors a person can act on.
//!
//! A [`ParseError`] names the line and column, shows the offending line with a
//! caret under the spot, and says in words what was expected there, e.g.
//! `prod.dtab:3:17: expected '=>' after the prefix /svc/users, found '/'`.
//!
//! Every `FromStr` first tries the grammar's lean rules (few, coarse
//! tokens: fast, no error detail) and, when they or the checks on their
//! tokens fail, the precise rules, whose value or error is the answer; see
//! the `lean` module and the README's Benchmarks section.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use pest::Parser;
use pest::iterators::{Pair, Pairs};

use super::dentry::{Dentry, Prefix, PrefixElem};
use super::path::{Label, Path, is_showable};
use super::table::Dtab;
use super::tree::{DEFAULT_WEIGHT, NameTree, Weighted};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/dtab.pest"]
struct DtabParser;

/// How deeply parentheses may nest in a text.
///
/// The parser recurses a few frames per level, and so do the conversion,
/// the show form and binding. pest can probe the stack on every rule call
/// instead, but that probe costs a tenth of a parse, so it is compiled out
/// (pest without `std`) and this bound keeps a hostile `l5d-dtab` header from
/// overflowing a worker thread's stack. A debug build overflows a 2 MiB
/// stack near 380 levels of `(/x | (/x | ...))`; real dtabs nest a few.
pub const MAX_PARENS: usize = 100;

/// Where a `(` opens level [`MAX_PARENS`]` + 1` in one dentry, if one does.
///
/// The text is read as [`dentry_spans`] reads it: comments skipped (a `#`
/// outside a label starts one), and the count starts again at each `;`
/// outside comments. No rule of the grammar crosses a `;` inside
/// parentheses, so pest never nests deeper than the deepest dentry; and
/// `parse_all`, which parses each dentry alone, finds the same errors.
fn too_deep(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut found = None;
    for_each_code_mark(s, |i, b| {
        match b {
            b';' => depth = 0,
            b'(' => {
                depth += 1;
                if depth > MAX_PARENS {
                    found = Some(i);
                    return false;
                }
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        true
    });
    found
}

/// Call `each` with every `(`, `)` and `;` of `s` outside comments, and its
/// position, until it returns `false`. A `#` starts a comment unless it is
/// inside a label (after a `/` and label bytes or escapes), as in the
/// grammar. The one reading of comments shared by [`dentry_spans`] and
/// [`too_deep`], so that `parse_all`'s pieces and the nesting bound agree.
///
/// It runs before every parse, so it jumps from mark to mark with memchr
/// instead of stepping through every byte (a byte loop was a tenth of the
/// parse of a large dtab). Whether a `#` is inside a label depends only on
/// the bytes since the last byte that is neither showable nor `\\`: it is
/// if that byte is a `/`. Each byte is looked at by at most one such
/// backward walk, so the scan stays linear.
fn for_each_code_mark(s: &str, mut each: impl FnMut(usize, u8) -> bool) {
    let bytes = s.as_bytes();
    // The next byte to read, and whether a label is open just before it.
    let mut i = 0;
    let mut in_label = false;
    while let Some(rest) = bytes.get(i..) {
        let mark = memchr::memchr3(b'(', b')', b';', rest);
        let window = rest.get(..mark.unwrap_or(rest.len())).unwrap_or(rest);
        if let Some(h) = memchr::memchr(b'#', window) {
            let before = window.get(..h).unwrap_or_default();
            let label = match before
                .iter()
                .rev()
                .find(|&&b| !(is_showable(b) || b == b'\\'))
            {
                Some(&b) => b == b'/',
                None => in_label,
            };
            if label {
                i += h + 1;
                in_label = true;
                continue;
            }
            // A comment: on to its newline, which closes any label.
            match rest.get(h..).and_then(|c| memchr::memchr(b'\n', c)) {
                Some(nl) => i += h + nl,
                None => return,
            }
            in_label = false;
            continue;
        }
        let Some(m) = mark else { return };
        let at = i + m;
        if !each(at, bytes.get(at).copied().unwrap_or_default()) {
            return;
        }
        i = at + 1;
        // `(`, `)` and `;` close any label.
        in_label = false;
    }
}

/// Every parse goes through here: pest's `parse` after the nesting bound.
fn run(rule: Rule, input: &str) -> Result<Pairs<'_, Rule>, pest::error::Error<Rule>> {
    if let Some(at) = too_deep(input) {
        let pos =
            pest::Position::new(input, at).unwrap_or_else(|| pest::Position::from_start(input));
        return Err(pest::error::Error::new_from_pos(
            pest::error::ErrorVariant::CustomError {
                message: format!("at most {MAX_PARENS} levels"),
            },
            pos,
        ));
    }
    DtabParser::parse(rule, input)
}

/// A syntax error, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where the text came from (a file name, a header name), if known.
    pub source: Option<String>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// The offending line, without its newline.
    pub line_text: String,
    /// What was expected, in words (`'=>'`, `a label or '*'`, ...).
    pub expected: String,
    /// What was found instead (`'^'`, `end of input`).
    pub found: String,
    /// Extra context, such as `after the prefix /svc/users`.
    pub context: Option<String>,
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// Name where the text came from, for the message (`prod.dtab:3:17: ...`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The first line of the message, without the excerpt:
    /// `[source:]line:col: expected X [context], found Y`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(src) = &self.source {
            s.push_str(src);
            s.push(':');
        }
        s.push_str(&format!(
            "{}:{}: expected {}",
            self.line, self.col, self.expected
        ));
        if let Some(ctx) = &self.context {
            s.push(' ');
            s.push_str(ctx);
        }
        s.push_str(", found ");
        s.push_str(&self.found);
        s
    }

    /// An error at byte `offset` of `input` (clamped to the text).
    fn at(input: &str, offset: usize, expected: String, context: Option<String>) -> ParseError {
        let mut offset = offset.min(input.len());
        while !input.is_char_boundary(offset) {
            offset -= 1;
        }
        let (before, after) = input.split_at(offset);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        let line_end = after.find('\n').map_or(input.len(), |i| offset + i);
        let line_text = input[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        ParseError {
            source: None,
            line,
            col,
            line_text,
            expected,
            found: describe_found(after),
            context,
        }
    }
}

fn describe_found(rest: &str) -> String {
    match rest.chars().next() {
        None => "end of input".to_string(),
        Some('\n') => "end of line".to_string(),
        Some('\r') if rest[1..].is_empty() || rest[1..].starts_with('\n') => {
            "end of line".to_string()
        }
        Some('\t') => "a tab".to_string(),
        Some(' ') => "a space".to_string(),
        Some(c) => format!("'{}'", c.escape_debug()),
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary())?;
        writeln!(f, "  | {}", self.line_text)?;
        // Tabs keep their width so the caret lines up.
        let pad: String = self
            .line_text
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "  | {pad}^")
    }
}

// === pest errors → words ===

/// What the text being parsed is, which decides how some rules are worded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Path,
    Prefix,
    Tree,
    Dentry,
    /// A whole dtab: `;` separates dentries.
    Dtab,
    /// One dentry cut out of a dtab at its `;`s: its end is a `;`.
    DtabPiece,
}

const TREE_WORDS: &str = "a path, '!', '~', '$' or '('";
const DENTRY_WORDS: &str = "a dentry such as /svc => /#/io.l5d.fs";

/// Word groups, in the order they are listed in a message.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Want {
    Dentry,
    Prefix,
    Path,
    Label,
    AnyElem,
    Tree,
    Weight,
    Star,
    Arrow,
    Pipe,
    Amp,
    Rparen,
    Semi,
    End,
}

fn want_of(r: Rule) -> Option<Want> {
    Some(match r {
        Rule::dentry | Rule::dentry_only | Rule::dtab => Want::Dentry,
        Rule::prefix | Rule::prefix_only | Rule::prefix_lead => Want::Prefix,
        Rule::path_only => Want::Path,
        Rule::label => Want::Label,
        Rule::any_elem => Want::AnyElem,
        Rule::path
        | Rule::tree
        | Rule::tree1
        | Rule::weighted
        | Rule::tree_only
        | Rule::fail
        | Rule::neg
        | Rule::empty => Want::Tree,
        Rule::weight => Want::Weight,
        Rule::star => Want::Star,
        Rule::arrow => Want::Arrow,
        Rule::pipe => Want::Pipe,
        Rule::amp => Want::Amp,
        Rule::rparen => Want::Rparen,
        Rule::semi => Want::Semi,
        Rule::EOI => Want::End,
        _ => return None,
    })
}

/// A located, worded error before it is placed in the whole text.
struct Problem {
    offset: usize,
    expected: String,
    context: Option<String>,
}

/// Phrase a pest error. `input` is what pest parsed; `offset`s are into it.
fn describe(input: &str, e: pest::error::Error<Rule>, mode: Mode) -> Problem {
    let offset = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let offset = offset.min(input.len());
    let mut wants: Vec<Want> = Vec::new();
    match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            wants.extend(positives.iter().filter_map(|r| want_of(*r)));
        }
        // Only `run`'s nesting bound makes a custom error.
        pest::error::ErrorVariant::CustomError { message } => {
            return Problem {
                offset,
                expected: "parentheses nested less deeply".into(),
                context: Some(format!("({message})")),
            };
        }
    }
    wants.sort();
    wants.dedup();
    let rest = input.get(offset..).unwrap_or("");
    let next = rest.chars().next();
    let prev = input.get(..offset).and_then(|b| b.chars().next_back());

    // A bad `\xHH` escape: the label stopped at the `\`. Point at the
    // character that is wrong, as Finagle's `parseLabel` does.
    if next == Some('\\')
        && let Some(p) = bad_escape(rest)
    {
        return p.shifted(offset);
    }

    let has = |w: Want| wants.contains(&w);
    // Drop words that would only add noise next to a more specific one.
    let mut shown: Vec<Want> = wants.clone();
    if has(Want::Dentry) || has(Want::Prefix) {
        shown.retain(|w| *w != Want::End);
    }
    if mode == Mode::Dtab && has(Want::Semi) {
        shown.retain(|w| *w != Want::End);
    }
    if has(Want::Tree) && next != Some('.') {
        shown.retain(|w| *w != Want::Weight);
    }
    if has(Want::Dentry) {
        shown.retain(|w| *w != Want::Prefix);
    }
    let mut words: Vec<&'static str> = Vec::new();
    for w in shown {
        let word = match w {
            Want::Dentry => DENTRY_WORDS,
            Want::Prefix => match mode {
                Mode::Prefix => "a prefix such as /svc/*",
                _ => DENTRY_WORDS,
            },
            Want::Path => "a path such as /svc/users",
            Want::Label => "a label",
            Want::AnyElem => "'*'",
            Want::Tree => TREE_WORDS,
            Want::Weight => "a weight",
            Want::Star => "'*'",
            Want::Arrow => "'=>'",
            Want::Pipe => "'|'",
            Want::Amp => "'&'",
            Want::Rparen => "')'",
            Want::Semi => "';'",
            Want::End => match mode {
                Mode::DtabPiece => "';'",
                _ => "end of input",
            },
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    if next == Some('.') && has(Want::Tree) {
        // Finagle's `parseNumber` rejects a lone `.`.
        words = vec!["a weight such as 2, 2.5 or .5"];
    }
    if words.is_empty() {
        words.push("valid dtab syntax");
    }
    let expected = join_words(&words);

    let mut ctx: Vec<String> = Vec::new();
    if has(Want::Arrow) {
        let start = match mode {
            Mode::Dtab => dentry_start(input, offset),
            _ => 0,
        };
        if let Some(p) = input.get(start..).and_then(leading_prefix) {
            ctx.push(format!("after the prefix {p}"));
        }
    }
    if let Some(h) = hint(&wants, prev, next, rest, mode) {
        ctx.push(format!("({h})"));
    }
    Problem {
        offset,
        expected,
        context: if ctx.is_empty() {
            None
        } else {
            Some(ctx.join(" "))
        },
    }
}

/// A short explanation for the common mistakes.
fn hint(
    wants: &[Want],
    prev: Option<char>,
    next: Option<char>,
    rest: &str,
    mode: Mode,
) -> Option<&'static str> {
    let has = |w: Want| wants.contains(&w);
    match next {
        Some('*') if has(Want::Arrow) => {
            Some("'*' must be a whole prefix element, as in /svc/*/users")
        }
        Some('*') if !has(Want::AnyElem) && !has(Want::Star) => {
            Some("'*' may only stand for a whole element of a dentry prefix")
        }
        _ if prev == Some('*') && has(Want::Arrow) => {
            Some("'*' must be a whole prefix element, as in /svc/*/users")
        }
        Some(c) if !c.is_ascii() => Some(
            "a label holds ASCII only; write other characters as \\xHH escapes of their UTF-8 bytes",
        ),
        _ if has(Want::Label) && prev == Some('/') && next != Some('*') => {
            Some("after '/': a path has no empty label and no trailing '/'")
        }
        Some('.') if has(Want::Star) => Some("a weight has at most one '.'"),
        Some('=') if has(Want::Arrow) && !rest.starts_with("=>") => {
            Some("'=>' is written without a space")
        }
        Some(',') if matches!(mode, Mode::Dtab | Mode::DtabPiece) => {
            Some("dentries are separated by ';', not ','")
        }
        Some('/') if matches!(mode, Mode::Dtab | Mode::DtabPiece) && has(Want::Pipe) => {
            Some("is the ';' between two dentries missing?")
        }
        Some('-' | '+') if has(Want::Tree) => Some("a weight has no sign"),
        Some(c) if c.is_ascii_digit() && has(Want::Tree) && !has(Want::Weight) => {
            Some("only one weight may stand before a tree")
        }
        Some(c)
            if (has(Want::Dentry) || has(Want::Prefix)) && is_showable(c as u8) && c.is_ascii() =>
        {
            Some("a prefix starts with '/'")
        }
        _ => None,
    }
}

impl Problem {
    fn shifted(mut self, by: usize) -> Problem {
        self.offset += by;
        self
    }
}

/// If `rest` starts with a malformed escape, where and what is wrong.
fn bad_escape(rest: &str) -> Option<Problem> {
    let b = rest.as_bytes();
    let escape_ctx = Some("(an escape is \\x and two hex digits, as in \\x2f)".to_string());
    if b.get(1) != Some(&b'x') {
        return Some(Problem {
            offset: 1,
            expected: "'x'".into(),
            context: escape_ctx,
        });
    }
    for i in 2..4 {
        if !b.get(i).is_some_and(u8::is_ascii_hexdigit) {
            return Some(Problem {
                offset: i,
                expected: "a hex digit".into(),
                context: escape_ctx,
            });
        }
    }
    None
}

/// The prefix text at the start of `s` (after whitespace and comments).
fn leading_prefix(s: &str) -> Option<String> {
    let mut pairs = run(Rule::prefix_lead, s).ok()?;
    let lead = pairs.next()?;
    let p = lead.into_inner().find(|p| p.as_rule() == Rule::prefix)?;
    Some(p.as_str().to_string())
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

// ParseError is big, but errors are the rare path and carry what a person needs.
#[allow(clippy::result_large_err)]
fn parse_rule(rule: Rule, mode: Mode, input: &str) -> Result<Pair<'_, Rule>, ParseError> {
    let mut pairs = run(rule, input).map_err(|e| {
        let p = describe(input, e, mode);
        ParseError::at(input, p.offset, p.expected, p.context)
    })?;
    pairs
        .next()
        .ok_or_else(|| ParseError::at(input, 0, "input".into(), None))
}

// === pest pairs → values ===

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// The label a `label` pair spells. The grammar guarantees it is non-empty
/// and that every `\` starts a well-formed `\xHH`.
fn label_of(s: &str) -> Label {
    let src = s.as_bytes();
    let bytes: Arc<[u8]> = if !src.contains(&b'\\') {
        Arc::from(src)
    } else {
        let mut bytes = Vec::with_capacity(src.len());
        let mut rest = src;
        while let Some((&b, tail)) = rest.split_first() {
            match (b, tail) {
                (b'\\', [_x, hi, lo, more @ ..]) => {
                    bytes.push((hex(*hi) << 4) | hex(*lo));
                    rest = more;
                }
                _ => {
                    bytes.push(b);
                    rest = tail;
                }
            }
        }
        Arc::from(bytes)
    };
    Label::new(bytes).unwrap_or_else(|_| placeholder_label())
}

#[cold]
fn placeholder_label() -> Label {
    // Never reached: `label` matches one or more characters.
    Label::new(&b"_"[..]).unwrap_or_else(|_| placeholder_label())
}

fn path_of(p: Pair<'_, Rule>) -> Path {
    let mut labels = Vec::with_capacity(4);
    for l in p.into_inner() {
        labels.push(label_of(l.as_str()));
    }
    Path::from_labels(labels)
}

fn prefix_of(p: Pair<'_, Rule>) -> Prefix {
    Prefix::new(
        p.into_inner()
            .map(|e| match e.as_rule() {
                Rule::any_elem => PrefixElem::Any,
                _ => PrefixElem::Label(label_of(e.as_str())),
            })
            .collect(),
    )
}

/// Where a semantic check failed (the grammar accepted the text).
struct Invalid {
    offset: usize,
    expected: &'static str,
}

fn tree_of(p: Pair<'_, Rule>) -> Result<NameTree<Path>, Invalid> {
    // Most trees have one member: allocate the Alt only for a second one.
    let mut first = None;
    let mut alts: Vec<NameTree<Path>> = Vec::new();
    for c in p.into_inner() {
        if c.as_rule() == Rule::tree1 {
            let t = tree1_of(c)?;
            match first.take() {
                None if alts.is_empty() => first = Some(t),
                Some(f) => alts.extend([f, t]),
                None => alts.push(t),
            }
        }
    }
    Ok(match first {
        Some(t) => t,
        None => NameTree::Alt(alts),
    })
}

fn tree1_of(p: Pair<'_, Rule>) -> Result<NameTree<Path>, Invalid> {
    let mut first = None;
    let mut members: Vec<Weighted<Path>> = Vec::new();
    for c in p.into_inner() {
        if c.as_rule() == Rule::weighted {
            let w = weighted_of(c)?;
            match first.take() {
                None if members.is_empty() => first = Some(w),
                Some(f) => members.extend([f, w]),
                None => members.push(w),
            }
        }
    }
    Ok(match first {
        // A weight on a lone member is dropped, as Finagle's parseTree1 does.
        Some(w) => w.tree,
        None => NameTree::Union(members),
    })
}

fn weighted_of(p: Pair<'_, Rule>) -> Result<Weighted<Path>, Invalid> {
    let mut weight = DEFAULT_WEIGHT;
    let mut tree = NameTree::Neg;
    for c in p.into_inner() {
        match c.as_rule() {
            Rule::weight => {
                weight = parse_weight(c.as_str()).ok_or(Invalid {
                    offset: c.as_span().start(),
                    expected: "a weight small enough to be a finite number",
                })?
            }
            Rule::star => {}
            Rule::tree => tree = tree_of(c)?,
            Rule::path => tree = NameTree::Leaf(path_of(c)),
            Rule::fail => tree = NameTree::Fail,
            Rule::neg => tree = NameTree::Neg,
            Rule::empty => tree = NameTree::Empty,
            _ => {}
        }
    }
    Ok(Weighted::new(weight, tree))
}

/// `1`, `2.5`, `.5`, `1.`, `007` (the grammar's `weight`), as Java's
/// `toDouble` reads them; `None` if the number does not fit in an f64.
fn parse_weight(s: &str) -> Option<f64> {
    let w: f64 = if let Some(int) = s.strip_suffix('.') {
        int.parse().ok()?
    } else if s.starts_with('.') {
        format!("0{s}").parse().ok()?
    } else {
        s.parse().ok()?
    };
    w.is_finite().then_some(w)
}

fn dentry_of(p: Pair<'_, Rule>) -> Result<Dentry, Invalid> {
    let mut prefix = Prefix::default();
    let mut dst = NameTree::Neg;
    for c in p.into_inner() {
        match c.as_rule() {
            Rule::prefix => prefix = prefix_of(c),
            Rule::tree => dst = tree_of(c)?,
            _ => {}
        }
    }
    Ok(Dentry::new(prefix, dst))
}

fn first_inner<'i>(p: Pair<'i, Rule>, rule: Rule) -> Option<Pair<'i, Rule>> {
    p.into_inner().find(|c| c.as_rule() == rule)
}

fn invalid(input: &str, e: Invalid) -> ParseError {
    ParseError::at(input, e.offset, e.expected.into(), None)
}

// === FromStr ===

impl FromStr for Path {
    type Err = ParseError;
    /// Finagle's `Path.read`.
    fn from_str(s: &str) -> Result<Path, ParseError> {
        match lean::path(s) {
            Some(v) => Ok(v),
            None => precise_path(s),
        }
    }
}

// ParseError is big, but errors are the rare path and carry what a person needs.
#[allow(clippy::result_large_err)]
fn precise_path(s: &str) -> Result<Path, ParseError> {
    let p = parse_rule(Rule::path_only, Mode::Path, s)?;
    Ok(first_inner(p, Rule::path).map(path_of).unwrap_or_default())
}

impl FromStr for Prefix {
    type Err = ParseError;
    /// Finagle's `Dentry.Prefix.read`.
    fn from_str(s: &str) -> Result<Prefix, ParseError> {
        let p = parse_rule(Rule::prefix_only, Mode::Prefix, s)?;
        Ok(first_inner(p, Rule::prefix)
            .map(prefix_of)
            .unwrap_or_default())
    }
}

impl FromStr for NameTree<Path> {
    type Err = ParseError;
    /// Finagle's `NameTree.read`.
    fn from_str(s: &str) -> Result<NameTree<Path>, ParseError> {
        match lean::tree(s) {
            Some(v) => Ok(v),
            None => precise_tree(s),
        }
    }
}

// ParseError is big, but errors are the rare path and carry what a person needs.
#[allow(clippy::result_large_err)]
fn precise_tree(s: &str) -> Result<NameTree<Path>, ParseError> {
    let p = parse_rule(Rule::tree_only, Mode::Tree, s)?;
    match first_inner(p, Rule::tree) {
        Some(t) => tree_of(t).map_err(|e| invalid(s, e)),
        None => Ok(NameTree::Neg),
    }
}

impl FromStr for Dentry {
    type Err = ParseError;
    /// Finagle's `Dentry.read`.
    fn from_str(s: &str) -> Result<Dentry, ParseError> {
        match lean::dentry(s) {
            Some(v) => Ok(v),
            None => parse_dentry(s, Mode::Dentry),
        }
    }
}

// ParseError is big, but errors are the rare path and carry what a person needs.
#[allow(clippy::result_large_err)]
fn parse_dentry(s: &str, mode: Mode) -> Result<Dentry, ParseError> {
    let p = parse_rule(Rule::dentry_only, mode, s)?;
    match first_inner(p, Rule::dentry) {
        Some(d) => dentry_of(d).map_err(|e| invalid(s, e)),
        None => Err(ParseError::at(s, 0, DENTRY_WORDS.into(), None)),
    }
}

impl FromStr for Dtab {
    type Err = ParseError;
    /// Finagle's `Dtab.read`: one error only, the first syntax error (or,
    /// when the syntax is right, the first weight too large for an f64); see
    /// [`Dtab::parse_all`] for all of them in text order.
    fn from_str(s: &str) -> Result<Dtab, ParseError> {
        match lean::dtab(s) {
            Some(v) => Ok(v),
            None => precise_dtab(s),
        }
    }
}

/// [`Dtab`]'s `FromStr` with the precise rules only: the reference the lean
/// rules are checked against, and the source of every error message.
// ParseError is big, but errors are the rare path and carry what a person needs.
#[allow(clippy::result_large_err)]
fn precise_dtab(s: &str) -> Result<Dtab, ParseError> {
    let p = parse_rule(Rule::dtab, Mode::Dtab, s)?;
    let mut dentries = Vec::new();
    for c in p.into_inner() {
        if c.as_rule() == Rule::dentry {
            dentries.push(dentry_of(c).map_err(|e| invalid(s, e))?);
        }
    }
    Ok(Dtab::new(dentries))
}

impl Dtab {
    /// Parse, and on failure report every bad dentry rather than the first
    /// only (for `switchyard dtab check` and config validation).
    ///
    /// The text is cut at each `;` that is not inside a comment and each
    /// piece is parsed alone, with positions kept relative to the whole text.
    /// The errors are in text order.
    pub fn parse_all(s: &str) -> Result<Dtab, Vec<ParseError>> {
        let first = match s.parse::<Dtab>() {
            Ok(d) => return Ok(d),
            Err(e) => e,
        };
        let mut errors = Vec::new();
        let pieces = dentry_spans(s);
        let last = pieces.len().saturating_sub(1);
        for (i, (start, end)) in pieces.into_iter().enumerate() {
            let piece = &s[start..end];
            if is_blank(piece) {
                // Only the last piece (after a trailing ';', or all of an
                // empty text) may hold no dentry.
                if i != last {
                    errors.push(ParseError::at(s, end, DENTRY_WORDS.into(), None));
                }
                continue;
            }
            if let Err(e) = parse_piece(s, start, end) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            errors.push(first);
        }
        Err(errors)
    }
}

/// Parse `whole[start..end]` as one dentry, placing errors in `whole`.
// ParseError is big, but errors are the rare path and carry what a person needs.
#[allow(clippy::result_large_err)]
fn parse_piece(whole: &str, start: usize, end: usize) -> Result<Dentry, ParseError> {
    let piece = &whole[start..end];
    let pair = match run(Rule::dentry_only, piece) {
        Ok(mut pairs) => pairs.next(),
        Err(e) => {
            let p = describe(piece, e, Mode::DtabPiece);
            return Err(ParseError::at(
                whole,
                start + p.offset,
                p.expected,
                p.context,
            ));
        }
    };
    match pair.and_then(|p| first_inner(p, Rule::dentry)) {
        Some(d) => dentry_of(d).map_err(|e| invalid(whole, e.shifted(start))),
        None => Err(ParseError::at(whole, start, DENTRY_WORDS.into(), None)),
    }
}

impl Invalid {
    fn shifted(mut self, by: usize) -> Invalid {
        self.offset += by;
        self
    }
}

/// Whether `piece` holds only whitespace and comments.
fn is_blank(piece: &str) -> bool {
    run(Rule::dtab, piece)
        .ok()
        .and_then(|mut p| p.next())
        .is_some_and(|d| d.into_inner().all(|c| c.as_rule() == Rule::EOI))
}

/// Byte ranges of the text between the `;`s that separate dentries.
///
/// A `;` cannot be part of a label (it is not showable), so every `;` outside
/// a comment separates. A `#` starts a comment unless it continues a label,
/// i.e. unless a `/` followed by label characters (or escapes) comes right
/// before it: `/#foo` and `/a#b` are labels, `$#`, `2#`, `*#` and ` #` start
/// comments, as in Finagle where only `eatWhitespace` skips comments.
fn dentry_spans(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for_each_code_mark(s, |i, b| {
        if b == b';' {
            out.push((start, i));
            start = i + 1;
        }
        true
    });
    out.push((start, s.len()));
    out
}

/// Where the dentry holding byte `offset` starts.
fn dentry_start(s: &str, offset: usize) -> usize {
    dentry_spans(s)
        .into_iter()
        .map(|(start, _)| start)
        .take_while(|&start| start <= offset)
        .last()
        .unwrap_or(0)
}

/// The precise rules alone, without the lean first try every `FromStr`
/// makes: for the fuzz targets, which check that both give the same answer.
#[doc(hidden)]
pub mod precise {
    use super::{Dentry, Dtab, Mode, NameTree, ParseError, Path};

    /// [`Dtab`]'s `FromStr` with the precise rules only.
    #[allow(clippy::result_large_err)]
    pub fn dtab(s: &str) -> Result<Dtab, ParseError> {
        super::precise_dtab(s)
    }

    /// [`Dentry`]'s `FromStr` with the precise rules only.
    #[allow(clippy::result_large_err)]
    pub fn dentry(s: &str) -> Result<Dentry, ParseError> {
        super::parse_dentry(s, Mode::Dentry)
    }

    /// [`NameTree`]'s `FromStr` with the precise rules only.
    #[allow(clippy::result_large_err)]
    pub fn tree(s: &str) -> Result<NameTree<Path>, ParseError> {
        super::precise_tree(s)
    }

    /// [`Path`]'s `FromStr` with the precise rules only.
    #[allow(clippy::result_large_err)]
    pub fn path(s: &str) -> Result<Path, ParseError> {
        super::precise_path(s)
    }
}

/// The lean rules of `grammar/dtab.pest`: the first try, with no error
/// detail (`None` sends the caller to the precise rules, which then give the
/// value or the error).
///
/// Their tokens are walked once, in order, with a stack of open Alts
/// (`lean_tree`) and Unions (`lean_tree1`) whose members wait in two shared
/// vectors, so a dentry costs no allocation beyond its own values.
mod lean {
    use std::sync::Arc;

    use pest::Token;

    use super::{Rule, is_showable, parse_weight, placeholder_label, run};
    use crate::dtab::dentry::{Dentry, Prefix, PrefixElem};
    use crate::dtab::path::{Label, Path};
    use crate::dtab::table::Dtab;
    use crate::dtab::tree::{DEFAULT_WEIGHT, NameTree, Weighted};

    /// Deeper parentheses go to the precise rules, so that where pest's
    /// stack limit lies (it differs between the rule sets) never decides
    /// whether a text parses.
    const MAX_NESTING: usize = 64;

    /// A dtab, if the lean rules and the value checks accept `s`.
    pub(super) fn dtab(s: &str) -> Option<Dtab> {
        Some(Dtab::new(build(Rule::lean_dtab, s)?.dentries))
    }

    /// A dentry, likewise.
    pub(super) fn dentry(s: &str) -> Option<Dentry> {
        let mut b = build(Rule::lean_dentry_only, s)?;
        b.dentries.pop().filter(|_| b.dentries.is_empty())
    }

    /// A name tree, likewise.
    pub(super) fn tree(s: &str) -> Option<NameTree<Path>> {
        build(Rule::lean_tree_only, s)?.tree
    }

    /// A path, likewise.
    pub(super) fn path(s: &str) -> Option<Path> {
        let mut b = build(Rule::lean_path_only, s)?;
        match b.members.pop()?.tree {
            NameTree::Leaf(p) if b.members.is_empty() => Some(p),
            _ => None,
        }
    }

    /// Parse `s` with a lean entry rule and walk its tokens.
    fn build(rule: Rule, s: &str) -> Option<Builder<'_>> {
        let pairs = run(rule, s).ok()?;
        let mut b = Builder::new(s);
        if rule == Rule::lean_dtab {
            // About one dentry per 48 bytes (the benchmark's take 64); more
            // only cost a regrowth.
            b.dentries.reserve(s.len() / 48 + 1);
        }
        for t in pairs.tokens() {
            b.token(t)?;
        }
        // Now that every label is read, give the paths their slice.
        let labels: Arc<[Label]> = Arc::from(std::mem::take(&mut b.slab));
        let trees = b.dentries.iter_mut().map(|d| &mut d.dst);
        let trees = trees
            .chain(b.tree.as_mut())
            .chain(b.members.iter_mut().map(|m| &mut m.tree));
        for t in trees {
            settle(t, &labels)?;
        }
        Some(b)
    }

    /// Give every path of `t` the slice of labels; `None` if one does not fit.
    fn settle(t: &mut NameTree<Path>, labels: &Arc<[Label]>) -> Option<()> {
        match t {
            NameTree::Leaf(p) => p.settle(labels).then_some(()),
            NameTree::Alt(ts) => ts.iter_mut().try_for_each(|t| settle(t, labels)),
            NameTree::Union(ws) => ws.iter_mut().try_for_each(|w| settle(&mut w.tree, labels)),
            NameTree::Neg | NameTree::Fail | NameTree::Empty => Some(()),
        }
    }

    enum Frame {
        /// An open `lean_tree`: its members are `alts[start..]`; `weight` is
        /// the one written before its `(`.
        Alt { start: usize, weight: Option<f64> },
        /// An open `lean_tree1`: its members are `members[start..]`.
        Union { start: usize },
    }

    struct Builder<'i> {
        input: &'i str,
        /// Where the token being read started.
        start: usize,
        frames: Vec<Frame>,
        alts: Vec<NameTree<Path>>,
        members: Vec<Weighted<Path>>,
        /// A weight read, waiting for the tree it weighs.
        weight: Option<f64>,
        /// The prefix of the dentry being read.
        prefix: Option<Prefix>,
        /// The last complete top-level tree (for a tree alone).
        tree: Option<NameTree<Path>>,
        dentries: Vec<Dentry>,
        /// The labels of every path read, in order: the paths are windows
        /// on it (one allocation for all of them), settled once it is
        /// complete.
        slab: Vec<Label>,
        /// A copy of `input` that every label is a window on: one
        /// allocation for all the labels of a dtab, where one each made a
        /// fifth of the parse.
        text: Arc<[u8]>,
    }

    impl<'i> Builder<'i> {
        fn new(input: &'i str) -> Builder<'i> {
            Builder {
                input,
                start: 0,
                frames: Vec::new(),
                alts: Vec::new(),
                members: Vec::new(),
                weight: None,
                prefix: None,
                tree: None,
                dentries: Vec::new(),
                slab: Vec::new(),
                text: Arc::from(input.as_bytes()),
            }
        }

        /// The label at `input[at..at + len]`, which `scan` found to be
        /// showable characters only (so no escapes: the bytes are the
        /// label's).
        fn label(&self, at: usize, len: usize) -> Label {
            Label::within(&self.text, at, len).unwrap_or_else(|_| placeholder_label())
        }

        /// The path at the start of a `lean_leaf`'s text, which starts at
        /// `input[at]`.
        fn path(&mut self, text: &str, at: usize) -> Option<Path> {
            let mut slab = std::mem::take(&mut self.slab);
            let first = slab.len();
            scan(text, false, |start, len| {
                slab.push(self.label(at + start, len))
            })?;
            let p = Path::pending(first, slab.len() - first);
            self.slab = slab;
            p
        }

        /// The prefix at the start of a `lean_prefix`'s text, likewise.
        fn prefix(&mut self, text: &str, at: usize) -> Option<Prefix> {
            let mut elems = Vec::with_capacity(4);
            scan(text, true, |start, len| {
                elems.push(match text.as_bytes().get(start) {
                    Some(b'*') => PrefixElem::Any,
                    _ => PrefixElem::Label(self.label(at + start, len)),
                })
            })?;
            Some(Prefix::new(elems))
        }

        /// A `lean_leaf`'s tree, told apart by its first character.
        fn leaf(&mut self, text: &str) -> Option<NameTree<Path>> {
            Some(match text.as_bytes().first()? {
                b'/' => NameTree::Leaf(self.path(text, self.start)?),
                b'!' => NameTree::Fail,
                b'~' => NameTree::Neg,
                b'$' => NameTree::Empty,
                _ => return None,
            })
        }

        /// Take the next token; `None` if its text fails a check.
        fn token(&mut self, t: Token<'i, Rule>) -> Option<()> {
            match t {
                Token::Start { rule, pos } => match rule {
                    Rule::lean_tree => {
                        if self.frames.len() >= MAX_NESTING {
                            return None;
                        }
                        self.frames.push(Frame::Alt {
                            start: self.alts.len(),
                            weight: self.weight.take(),
                        });
                    }
                    Rule::lean_tree1 => self.frames.push(Frame::Union {
                        start: self.members.len(),
                    }),
                    _ => self.start = pos.pos(),
                },
                Token::End { rule, pos } => {
                    let text = self.input.get(self.start..pos.pos());
                    match rule {
                        Rule::lean_prefix => self.prefix = Some(self.prefix(text?, self.start)?),
                        Rule::lean_weight => {
                            // The number, before the whitespace and `*`.
                            let text = text?;
                            let end = text
                                .bytes()
                                .position(|b| !(b.is_ascii_digit() || b == b'.'))
                                .unwrap_or(text.len());
                            self.weight = Some(parse_weight(text.get(..end)?)?);
                        }
                        Rule::lean_sole_leaf => {
                            let leaf = self.leaf(text?)?;
                            self.dentries.push(Dentry::new(self.prefix.take()?, leaf));
                        }
                        Rule::lean_leaf => {
                            let leaf = self.leaf(text?)?;
                            let w = self.weight.take().unwrap_or(DEFAULT_WEIGHT);
                            self.members.push(Weighted::new(w, leaf));
                        }
                        Rule::lean_tree1 => {
                            let Some(Frame::Union { start }) = self.frames.pop() else {
                                return None;
                            };
                            let t = if self.members.len() == start + 1 {
                                // A weight on a lone member is dropped.
                                self.members.pop()?.tree
                            } else {
                                NameTree::Union(self.members.split_off(start))
                            };
                            self.alts.push(t);
                        }
                        Rule::lean_tree => {
                            let Some(Frame::Alt { start, weight }) = self.frames.pop() else {
                                return None;
                            };
                            let t = if self.alts.len() == start + 1 {
                                self.alts.pop()?
                            } else {
                                NameTree::Alt(self.alts.split_off(start))
                            };
                            if self.frames.is_empty() {
                                match self.prefix.take() {
                                    Some(p) => self.dentries.push(Dentry::new(p, t)),
                                    None => self.tree = Some(t),
                                }
                            } else {
                                let w = weight.unwrap_or(DEFAULT_WEIGHT);
                                self.members.push(Weighted::new(w, t));
                            }
                        }
                        _ => {}
                    }
                }
            }
            Some(())
        }
    }

    /// Split the path or prefix at the start of a `lean_leaf` or
    /// `lean_prefix` into its labels (or `*`s), calling `each` on them; `None`
    /// unless it is one.
    ///
    /// `skip_until` stopped at the first space or `=` (prefix) or `;` or `)`
    /// (path), so what comes before that was skipped: it must be a `/`,
    /// non-empty labels of showable characters (and elements that are a `*`
    /// alone when `star`) separated by single `/`s, then ASCII whitespace
    /// only (`/a\n` at the end of a line is fine; `/a/`, `/a//b`, `/a*`,
    /// `/a\n/b` and `/a\t#x` are not).
    fn scan(text: &str, star: bool, mut each: impl FnMut(usize, usize)) -> Option<()> {
        let b = text.as_bytes();
        if b.first() != Some(&b'/') {
            return None;
        }
        let mut start = 1;
        let mut stars = false;
        let mut i = 1;
        loop {
            match b.get(i) {
                Some(b'/') => {
                    each(start, element(b, start, i, stars)?);
                    start = i + 1;
                    stars = false;
                }
                Some(&c) if is_showable(c) => {}
                Some(b'*') if star => stars = true,
                rest => {
                    // `/` alone is the empty path.
                    if i > 1 {
                        each(start, element(b, start, i, stars)?);
                    }
                    let ws = rest.is_none()
                        || b.get(i..)?
                            .iter()
                            .take_while(|&&c| !stop(c, star))
                            .all(|&c| matches!(c, b'\t'..=b'\r' | 0x1C..=0x1F));
                    return ws.then_some(());
                }
            }
            i += 1;
        }
    }

    /// Where `skip_until` stops in a `lean_prefix` (`star`) or a `lean_leaf`.
    fn stop(c: u8, star: bool) -> bool {
        if star {
            matches!(c, b' ' | b'=')
        } else {
            matches!(c, b' ' | b';' | b')')
        }
    }

    /// The length of `text[start..end]` if it is a label, or a `*` alone
    /// (`stars`: it holds a `*`).
    fn element(text: &[u8], start: usize, end: usize, stars: bool) -> Option<usize> {
        let e = text.get(start..end).filter(|e| !e.is_empty())?;
        (!stars || e == b"*").then_some(e.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Path {
        s.parse().unwrap()
    }
    fn tree(s: &str) -> NameTree<Path> {
        s.parse().unwrap()
    }
    fn leaf(s: &str) -> NameTree<Path> {
        NameTree::Leaf(path(s))
    }
    fn dtab(s: &str) -> Dtab {
        s.parse().unwrap()
    }
    fn err<T: FromStr<Err = ParseError> + fmt::Debug>(s: &str) -> String {
        s.parse::<T>().unwrap_err().summary()
    }

    #[test]
    fn paths() {
        assert!(path("/").is_empty());
        assert_eq!(path(" /a/b ").elems().len(), 2);
        assert_eq!(path("/foo#bar").to_string(), "/foo#bar");
        assert_eq!(path("/#foo").elems()[0].as_bytes(), b"#foo");
        assert_eq!(path("/$/inet/127.1/8080").len(), 4);
        assert_eq!(path("/_:.#$%-09azAZ").len(), 1);
        // Escapes, either case, denote one byte; shown literally when showable.
        assert_eq!(path("/\\x66\\x6f\\x6F").to_string(), "/foo");
        assert_eq!(path("/\\x2F").elems()[0].as_bytes(), b"/");
        assert_eq!(path("/a\\x20b").to_string(), "/\\x61\\x20\\x62");
        // Comments where whitespace may stand.
        assert_eq!(path("# c\n/a # trailing").to_string(), "/a");
        for bad in [
            "/a/", "/a//b", "//", "/a b", "a", "", "/é", "/a\\x4", "/a\\y41", "/a*", "/*", "/a=b",
            "/\\", "/a\\x4g",
        ] {
            assert!(bad.parse::<Path>().is_err(), "{bad:?}");
        }
        assert_eq!(
            err::<Path>("/foo/bar/"),
            "1:10: expected a label (after '/': a path has no empty label and no trailing '/'), found end of input"
        );
        assert_eq!(
            err::<Path>("/foo^bar"),
            "1:5: expected end of input, found '^'"
        );
        assert_eq!(
            err::<Path>("/a\\x4g"),
            "1:6: expected a hex digit (an escape is \\x and two hex digits, as in \\x2f), found 'g'"
        );
    }

    #[test]
    fn java_whitespace_and_comments() {
        for ws in [
            "\u{0B}", "\u{0C}", "\u{1C}", "\u{1F}", "\u{2003}", "\u{3000}", "\u{2028}",
        ] {
            assert_eq!(path(&format!("{ws}/a{ws}")).to_string(), "/a");
        }
        // No-break spaces are not whitespace in Java.
        assert!("\u{A0}/a".parse::<Path>().is_err());
        // Only '\n' ends a comment: a lone '\r' does not.
        assert_eq!(dtab("/a=>/b # c\r/x=>/y\n;/c=>/d").len(), 2);
    }

    #[test]
    fn prefixes() {
        let p: Prefix = "/a/*/c".parse().unwrap();
        assert_eq!(p.elems()[1], PrefixElem::Any);
        assert_eq!(p.to_string(), "/a/*/c");
        assert!("/".parse::<Prefix>().unwrap().is_empty());
        assert_eq!("/*".parse::<Prefix>().unwrap().len(), 1);
        for bad in ["/a*", "/*a", "/a/**", "/a/", "/a//b", "*"] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trees() {
        let (a, b, c, d) = (leaf("/a"), leaf("/b"), leaf("/c"), leaf("/d"));
        let w = Weighted::new;
        assert_eq!(tree("!"), NameTree::Fail);
        assert_eq!(tree("~"), NameTree::Neg);
        assert_eq!(tree("$"), NameTree::Empty);
        assert_eq!(tree("/"), NameTree::Leaf(Path::empty()));
        assert_eq!(
            tree("/a & /b | /c & /d"),
            NameTree::Alt(vec![
                NameTree::Union(vec![w(1.0, a.clone()), w(1.0, b.clone())]),
                NameTree::Union(vec![w(1.0, c.clone()), w(1.0, d.clone())]),
            ])
        );
        // n-ary, not flattened.
        assert_eq!(
            tree("/a | (/b | /c)"),
            NameTree::Alt(vec![a.clone(), NameTree::Alt(vec![b.clone(), c.clone()])])
        );
        assert_eq!(
            tree("/a | /b | /c"),
            NameTree::Alt(vec![a.clone(), b.clone(), c.clone()])
        );
        // Parentheses vanish around single items; a lone weight is dropped.
        assert_eq!(tree("((/a))"), a);
        assert_eq!(tree("2 * /a"), a);
        assert_eq!(
            tree("2 * /a | /b"),
            NameTree::Alt(vec![a.clone(), b.clone()])
        );
        // Weights.
        for (text, weight) in [
            ("1", 1.0),
            ("2.5", 2.5),
            (".5", 0.5),
            ("1.", 1.0),
            ("007", 7.0),
            ("0", 0.0),
        ] {
            assert_eq!(
                tree(&format!("{text} * /a & /b")),
                NameTree::Union(vec![w(weight, a.clone()), w(1.0, b.clone())]),
                "{text}"
            );
        }
        assert_eq!(
            tree("2*/a&3*/b"),
            NameTree::Union(vec![w(2.0, a.clone()), w(3.0, b.clone())])
        );
        // Comments inside a tree, after '&' and inside parentheses.
        assert_eq!(
            tree("( /a & # one\n /b ) # end"),
            NameTree::Union(vec![w(1.0, a.clone()), w(1.0, b.clone())])
        );
        for bad in [
            "",
            "   ",
            "# only a comment",
            "0.1.2 * /a",
            ". * /a",
            "2 * 3 * /a",
            "2 /a",
            "-1 * /a",
            "1e3 * /a",
            "/a |",
            "& /a",
            "(/a",
            "/a)",
            "()",
            "/a/*",
            "/a, /b",
            "/a ! /b",
            "@",
            "2 * * /a",
        ] {
            assert!(bad.parse::<NameTree<Path>>().is_err(), "{bad:?}");
        }
        assert_eq!(
            err::<NameTree<Path>>("0.1.2 * /a & /b"),
            "1:4: expected '*' (a weight has at most one '.'), found '.'"
        );
        assert_eq!(
            err::<NameTree<Path>>(". * /a"),
            "1:1: expected a weight such as 2, 2.5 or .5, found '.'"
        );
        assert_eq!(
            err::<NameTree<Path>>("2 * 3 * /a"),
            "1:5: expected a path, '!', '~', '$' or '(' (only one weight may stand before a tree), found '3'"
        );
        assert_eq!(
            err::<NameTree<Path>>(""),
            "1:1: expected a path, '!', '~', '$' or '(', found end of input"
        );
    }

    #[test]
    fn dentries() {
        let d: Dentry = "/a/*/c => /d | !".parse().unwrap();
        assert_eq!(d.to_string(), "/a/*/c=>/d | !");
        assert_eq!("/=>~".parse::<Dentry>().unwrap().to_string(), "/=>~");
        assert_eq!(
            err::<Dentry>("/svc/users /srv"),
            "1:12: expected '=>' after the prefix /svc/users, found '/'"
        );
        assert_eq!(
            err::<Dentry>("/a = > /b"),
            "1:4: expected '=>' after the prefix /a ('=>' is written without a space), found '='"
        );
    }

    #[test]
    fn dtabs() {
        assert!(dtab("").is_empty());
        assert!(dtab("  \n# nothing here\n  ").is_empty());
        assert_eq!(dtab("/=>!;").to_string(), "/=>!");
        assert_eq!(dtab("/a=>/b;/c=>/d").len(), 2);
        // Finagle's DtabTest: comments everywhere, `/#foo` is a label.
        let d = dtab(
            "# a full-line comment\n\
             /#foo => /bar; # after a semicolon\n\
             #/ignore=>/me;\n\
             /a => /b # trailing\n  & # after &\n /c;\n",
        );
        assert_eq!(d.to_string(), "/#foo=>/bar;/a=>/b & /c");
        for bad in [
            ";",
            ";/a=>/b",
            "/a=>/b;;",
            "/a=>/b;;/c=>/d",
            "/a=>/b,/c=>/d",
            "/a=>/b /c=>/d",
        ] {
            assert!(bad.parse::<Dtab>().is_err(), "{bad:?}");
        }
        assert_eq!(
            err::<Dtab>("/a => /b;\n/c => /d;\n/svc/users /srv/users;"),
            "3:12: expected '=>' after the prefix /svc/users, found '/'"
        );
        assert_eq!(
            err::<Dtab>("/a=>/b;;"),
            "1:8: expected a dentry such as /svc => /#/io.l5d.fs, found ';'"
        );
        assert_eq!(
            err::<Dtab>("/a=>/b)"),
            "1:7: expected '|', '&' or ';', found ')'"
        );
    }

    #[test]
    fn error_display_has_line_and_caret() {
        let e = "/a => /b;\n\t/c /d"
            .parse::<Dtab>()
            .unwrap_err()
            .with_source("prod.dtab");
        assert_eq!(
            e.to_string(),
            "prod.dtab:2:5: expected '=>' after the prefix /c, found '/'\n  | \t/c /d\n  | \t   ^"
        );
    }

    #[test]
    fn parse_all_reports_every_bad_dentry() {
        let text = "/ok => /fine;\n/bad1 /x; # comment; with ; semicolons\n/h#x => /y;\n\
                    /bad2 => /z/;\n/ok2 => /w;";
        let errs = Dtab::parse_all(text).unwrap_err();
        let sums: Vec<String> = errs.iter().map(ParseError::summary).collect();
        assert_eq!(
            sums,
            [
                "2:7: expected '=>' after the prefix /bad1, found '/'",
                "4:13: expected a label (after '/': a path has no empty label and no trailing '/'), found ';'",
            ]
        );
        // In a piece, the end is a ';'.
        let errs = Dtab::parse_all("/a => /b /c; /d => /e").unwrap_err();
        assert_eq!(
            errs[0].summary(),
            "1:10: expected '|', '&' or ';' (is the ';' between two dentries missing?), found '/'"
        );
        assert_eq!(
            errs[0].summary(),
            "/a => /b /c; /d => /e"
                .parse::<Dtab>()
                .unwrap_err()
                .summary()
        );
        // Leading ';', ';;' and a trailing ';'.
        let errs = Dtab::parse_all(";/a=>/b;;/c=>/d;").unwrap_err();
        let sums: Vec<String> = errs.iter().map(ParseError::summary).collect();
        assert_eq!(
            sums,
            [
                "1:1: expected a dentry such as /svc => /#/io.l5d.fs, found ';'",
                "1:9: expected a dentry such as /svc => /#/io.l5d.fs, found ';'",
            ]
        );
        assert_eq!(Dtab::parse_all("/a=>/b;").unwrap().len(), 1);
        assert!(Dtab::parse_all("").unwrap().is_empty());
        // A value error before a syntax error: `parse` reports the syntax
        // error, `parse_all` both, in text order.
        let text = format!("/a => 1{} * /b & /c;\n0", "0".repeat(400));
        let errs = Dtab::parse_all(&text).unwrap_err();
        let sums: Vec<String> = errs.iter().map(ParseError::summary).collect();
        let first = text.parse::<Dtab>().unwrap_err().summary();
        assert_eq!(sums.len(), 2, "{sums:?}");
        assert!(
            sums[0].starts_with("1:7: expected a weight small enough"),
            "{sums:?}"
        );
        assert_eq!(sums[1], first);
        // `$#` starts a comment (Finagle eats whitespace after `$`).
        assert_eq!(
            Dtab::parse_all("/a => $# ; not a separator\n;/b=>/c")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn dentry_spans_follow_comment_rules() {
        // `#` right after a label continues it, so the `;` after it separates;
        // `#` after a weight starts a comment, so that `;` does not.
        let s = "/a#;b => /c; /d => 2#;\n* /e";
        assert_eq!(dentry_spans(s), [(0, 3), (4, 11), (12, 27)]);
    }
}

#[cfg(test)]
mod deep {
    use super::*;

    /// The plain reading of comments: every byte in turn, a label opened
    /// by `/`, kept by showable bytes and `\\`, closed by anything else.
    fn marks_byte_by_byte(s: &str) -> Vec<(usize, u8)> {
        let bytes = s.as_bytes();
        let (mut out, mut in_label, mut i) = (Vec::new(), false, 0);
        while i < bytes.len() {
            let b = bytes[i];
            match b {
                b'/' => in_label = true,
                b'#' if !in_label => match bytes[i..].iter().position(|&c| c == b'\n') {
                    Some(nl) => {
                        i += nl;
                        continue;
                    }
                    None => break,
                },
                b'\\' => {}
                _ if is_showable(b) => {}
                _ => in_label = false,
            }
            if matches!(b, b'(' | b')' | b';') {
                out.push((i, b));
            }
            i += 1;
        }
        out
    }

    fn marks(s: &str) -> Vec<(usize, u8)> {
        let mut out = Vec::new();
        for_each_code_mark(s, |i, b| {
            out.push((i, b));
            true
        });
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4000, ..Default::default() })]

        /// The memchr scan finds exactly the marks a byte-by-byte reading does.
        #[test]
        fn marks_agree_with_a_byte_by_byte_reading(s in "[/a#\\\\();\n \t*~$]{0,60}") {
            proptest::prop_assert_eq!(marks(&s), marks_byte_by_byte(&s));
        }
    }

    #[test]
    fn marks_examples() {
        for s in [
            "/a#;b => /c; /d => 2#;\n* /e",
            "#(\n(;)",
            "/\\#(;",
            "a#(\n)",
            "/a/b#c#(\n;",
            "~#;\n/x#;",
        ] {
            assert_eq!(marks(s), marks_byte_by_byte(s), "{s:?}");
        }
    }

    /// Parentheses in comments do not count; a `#` in a label is no comment.
    #[test]
    fn nesting_is_counted_outside_comments() {
        let open = "(".repeat(MAX_PARENS + 50);
        let nested = format!("{}/b{}", "(".repeat(MAX_PARENS), ")".repeat(MAX_PARENS));
        let text = format!("# {open}\n/a#x => {nested}; # {open}\n/c=>/d #{open}");
        assert_eq!(too_deep(&text), None);
        assert!(text.parse::<Dtab>().is_ok());
        // One more level, after a label holding a `#`, is too deep.
        let deeper = format!("/a/#/x => ({nested})");
        assert_eq!(too_deep(&deeper), Some("/a/#/x => ".len() + MAX_PARENS));
        // Ws before a comment: `~#(` is `~` then a comment.
        assert_eq!(too_deep(&format!("/a => ~#{open}")), None);
        // Each dentry counts alone, as `parse_all` sees them.
        let half = "(".repeat(MAX_PARENS / 2 + 1);
        let text = format!("/a => {half}; /b => {half}/c");
        assert_eq!(too_deep(&text), None);
        let errs = Dtab::parse_all(&text).unwrap_err();
        let plain = text.parse::<Dtab>().unwrap_err();
        assert!(errs.iter().any(|e| e.summary() == plain.summary()));
    }

    /// A request header can carry a dtab: deep nesting must fail or parse,
    /// never overflow the stack of a (2 MiB) worker thread.
    #[test]
    fn deep_nesting_does_not_overflow_a_small_stack() {
        for depth in [100usize, MAX_PARENS, MAX_PARENS + 1, 1_000, 8_000, 50_000] {
            let text = format!("/a => {}/b{}", "(".repeat(depth), ")".repeat(depth));
            // Nested values too (these parentheses do not vanish), shown and
            // bound at the deepest depth allowed.
            let nested = format!("/a => {}/b{}", "(/x | ".repeat(depth), ")".repeat(depth));
            let r = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let d = nested.parse::<Dtab>().ok()?;
                    let shown = d.to_string();
                    let tree = d.lookup(&"/a".parse::<Path>().ok()?);
                    Some((shown.len(), format!("{tree}").len()))
                })
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(r.is_some(), depth <= MAX_PARENS, "{depth}");
            let r = std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let r = text.parse::<Dtab>().map(|d| d.to_string().len());
                    r.map_err(|e| e.summary())
                })
                .unwrap()
                .join()
                .unwrap();
            match r {
                // Parentheses vanish: the show form is `/a=>/b`.
                Ok(len) => {
                    assert!(depth <= MAX_PARENS, "{depth}");
                    assert_eq!(len, "/a=>/b".len(), "{depth}")
                }
                Err(e) => {
                    assert!(depth > MAX_PARENS, "{depth}: {e}");
                    // At the first `(` too many.
                    let at = format!("1:{}:", 7 + MAX_PARENS);
                    assert!(e.contains(&at), "{depth}: {e}");
                    assert!(
                        e.contains("expected parentheses nested less deeply (at most 100 levels)"),
                        "{depth}: {e}"
                    )
                }
            }
        }
    }
}

/// The lean rules against the precise ones: wherever the lean rules give a
/// value, the precise rules give the same one (elsewhere the precise rules
/// decide, so the answer is theirs by construction).
#[cfg(test)]
mod lean_agrees {
    use proptest::prelude::*;

    use super::*;

    /// Check every entry point on `s`; true if the lean rules took it at one.
    fn agree(s: &str) -> bool {
        let mut took = false;
        if let Some(d) = lean::dtab(s) {
            took = true;
            let p = precise_dtab(s)
                .unwrap_or_else(|e| panic!("lean accepts {s:?}, precise says {}", e.summary()));
            assert_eq!(d, p, "{s:?}");
            assert_eq!(d.to_string(), p.to_string(), "{s:?}");
        }
        if let Some(x) = lean::dentry(s) {
            took = true;
            let p = parse_dentry(s, Mode::Dentry)
                .unwrap_or_else(|e| panic!("lean accepts {s:?}, precise says {}", e.summary()));
            assert_eq!(x, p, "{s:?}");
        }
        if let Some(x) = lean::tree(s) {
            took = true;
            let p = precise_tree(s)
                .unwrap_or_else(|e| panic!("lean accepts {s:?}, precise says {}", e.summary()));
            assert_eq!(x, p, "{s:?}");
        }
        if let Some(x) = lean::path(s) {
            took = true;
            let p = precise_path(s)
                .unwrap_or_else(|e| panic!("lean accepts {s:?}, precise says {}", e.summary()));
            assert_eq!(x, p, "{s:?}");
        }
        took
    }

    /// Texts the lean rules must take (or parsing is slow again), and
    /// corner cases they must get right or leave to the precise rules.
    const SEEDS: &[&str] = &[
        "/svc/service-1 => /#/io.l5d.k8s/ns-1/http/service-1;\n",
        "/svc/s => 9 * /srv/s-v1 & /srv/s-v2;\n/svc/t => /srv/t | /dnssrv/t.srv.dc-2.example.org.;",
        "/host/*/service-3 => /svc/service-3; # by any namespace\n",
        "/grpc/pkg5.Service => (/srv/grpc-5 & 0.25 * /srv/grpc-5-canary) | ~;",
        "/env/prod => /$/inet/127.0.0.1/8080;\n/=>!;/a=>$;/b=>~",
        "# a full-line comment\n/#foo => /bar; # after a semicolon\n#/ignore=>/me;\n\
         /a => /b # trailing\n  & # after &\n /c;\n",
        "/a => /b\n",
        "/a=>/b;/c=>/d",
        "/a/b",
        " /a ",
        "/",
        "2 */a &3* /b",
        "( /a & # one\n /b ) # end",
        "/a | (/b | /c)",
        "((/a))",
        "1. * /a & .5 * /b & 007 * /c",
        "",
        "  \n# nothing\n  ",
        "/a => $# ; not a separator\n;/b=>/c",
        "/a=>/b # c\r/x=>/y\n;/c=>/d",
    ];

    /// Texts that are not dtabs, or that the lean rules must not misread.
    const TRICKY: &[&str] = &[
        "/svc/serai)e-1 => /#/io.l5d.k8s/ns-1/http/service-1;\n",
        "/x=>/a\n=b;",
        "/x\n;=>/a",
        "/x\n)=>/a",
        "/x=>(/a\n=b)",
        "/x=>/a\n;=>/b",
        "/x=>/a\t",
        "/x\t=>/a",
        "/a/",
        "/a//b",
        "//",
        "/a b",
        "a",
        "/é",
        "/a\\x4",
        "/a\\x41",
        "/\\x2F",
        "/a*",
        "/*a",
        "/a/**",
        "/a/*/c=>/d",
        "/a*=>/b",
        "/*a=>/b",
        "/a=>/b*",
        "/a=>/*",
        "/a=>/b/",
        "/a=>/b//c",
        "/a=>/b\n/c=>/d",
        "/a=>/b\n# c;/x=>/y",
        "/a=>/b\t#x;/c=>/d",
        "/a=>/b\n&/c",
        "/a=>/b&/c",
        "/a=>/b|/c",
        "/a=>(/b)",
        "/a=>(/b)/c",
        "/a => 2 # w\n * /b & /c",
        "/a => 2 /b",
        "/a => 2 * 3 * /b",
        "/a=>/b;;",
        ";",
        "/a=>/b,/c=>/d",
        "/a = > /b",
        "/a\n=> /b",
        "/a\u{2003}=> /b",
        "/a =>\u{3000}/b",
        "\u{0B}/a=>/b\u{1C}",
        "/a => 1e3 * /b",
        "/a=>/b)",
        "/a=>(/b",
        "/a => 1.2.3 * /b & /c",
    ];

    #[test]
    fn seeds_take_the_lean_path_and_agree() {
        for s in SEEDS {
            assert!(agree(s), "the lean rules refuse {s:?}");
        }
        // As does a dtab of the benchmark's dentry shapes.
        let mut big = String::from("# generated\n");
        for i in 0..60 {
            big.push_str(&format!(
                "/svc/s-{i} => /#/io.l5d.k8s/ns-{i}/http/s-{i};\n\
                 /svc/s-{i} => 9 * /srv/s-{i}-v1 & /srv/s-{i}-v2;\n\
                 /svc/s-{i} => /srv/s-{i} | /dnssrv/s-{i}.srv.dc-2.example.org.;\n\
                 /host/*/s-{i} => /svc/s-{i}; # by any namespace\n\
                 /grpc/pkg{i}.Service => (/srv/grpc-{i} & 0.25 * /srv/grpc-{i}-canary) | ~;\n"
            ));
        }
        assert_eq!(lean::dtab(&big).map(|d| d.len()), Some(300));
        assert!(agree(&big));
        assert!(lean::path("/svc/users").is_some());
        assert!(lean::tree("/a & 2 * /b | ~").is_some());
        assert!(lean::dentry("/svc/* => /srv").is_some());
    }

    #[test]
    fn tricky_texts_agree() {
        for s in TRICKY {
            agree(s);
        }
        // Deep parentheses are left to the precise rules.
        let deep = format!("/a => {}/b{}", "(".repeat(100), ")".repeat(100));
        assert!(lean::dtab(&deep).is_none());
        assert!(agree(&format!(
            "/a => {}/b{}",
            "(".repeat(10),
            ")".repeat(10)
        )));
        // An infinite weight is the precise rules' error.
        let huge = format!("/a => 1{} * /b & /c", "0".repeat(400));
        assert!(!agree(&huge));
    }

    /// Characters dtabs are made of, and some they must not hold.
    const ALPHABET: &str = "/ab*#$!~&|();=>. 0123\n\t\r\\x,é\u{0B}\u{2003}";

    fn mutated() -> impl Strategy<Value = String> {
        let chars: Vec<char> = ALPHABET.chars().collect();
        (
            0..SEEDS.len(),
            prop::collection::vec(
                (
                    any::<prop::sample::Index>(),
                    0..3u8,
                    prop::sample::select(chars),
                ),
                1..4,
            ),
        )
            .prop_map(|(seed, edits)| {
                let mut v: Vec<char> = SEEDS[seed].chars().collect();
                for (at, op, c) in edits {
                    let i = at.index(v.len() + 1);
                    match op {
                        0 => v.insert(i, c),
                        1 if i < v.len() => {
                            v.remove(i);
                        }
                        _ if i < v.len() => v[i] = c,
                        _ => v.push(c),
                    }
                }
                v.into_iter().collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_texts_agree(s in "[/ab*#$!~&|();=>. 0123\n\t\r\\\\x,é\u{0B}\u{2003}]{0,40}") {
            agree(&s);
        }

        #[test]
        fn mutated_dtabs_agree(s in mutated()) {
            agree(&s);
        }
    }
}
