//! The parser: `grammar/dtab.pest` turned into [`Path`], [`Prefix`],
//! [`NameTree`], [`Dentry`] and [`Dtab`], with errors a person can act on.
//!
//! A [`ParseError`] names the line and column, shows the offending line with a
//! caret under the spot, and says in words what was expected there.

use std::fmt;
use std::str::FromStr;

use pest::Parser;
use pest::iterators::Pair;

use super::dentry::{Dentry, Prefix, PrefixElem};
use super::path::{Label, Path};
use super::table::Dtab;
use super::tree::{DEFAULT_WEIGHT, NameTree, Weighted};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/dtab.pest"]
struct DtabParser;

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
    /// What was expected, in words (`'=>'`, `a path`, ...).
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

    /// The first line of the message, without the excerpt.
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
        s.push_str(&format!(", found {}", self.found));
        s
    }

    fn at(input: &str, offset: usize, expected: String, context: Option<String>) -> ParseError {
        let offset = offset.min(input.len());
        let before = &input[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = input[line_start..offset].chars().count() + 1;
        let line_end = input[line_start..]
            .find('\n')
            .map_or(input.len(), |i| line_start + i);
        let line_text = input[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let found = match input[offset..].chars().next() {
            None => "end of input".to_string(),
            Some('\n') | Some('\r') => "end of line".to_string(),
            Some(c) => format!("'{}'", c.escape_debug()),
        };
        ParseError {
            source: None,
            line,
            col,
            line_text,
            expected,
            found,
            context,
        }
    }

    /// Shift the position by where `input` started inside a larger text.
    fn offset_by(mut self, whole: &str, start: usize) -> ParseError {
        let before = &whole[..start];
        let extra_lines = before.matches('\n').count();
        if self.line == 1 {
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            self.col += whole[line_start..start].chars().count();
        }
        self.line += extra_lines;
        let ls = whole
            .split('\n')
            .nth(self.line - 1)
            .unwrap_or("")
            .trim_end_matches('\r');
        self.line_text = ls.to_string();
        self
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

fn rule_words(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::label | Rule::escape => "a label",
        Rule::path | Rule::path_only => "a path such as /svc/users",
        Rule::prefix | Rule::prefix_only | Rule::prefix_lead | Rule::any_elem => {
            "a prefix such as /svc"
        }
        Rule::dentry | Rule::dentry_only => "a dentry such as /svc => /#/io.l5d.fs",
        Rule::tree
        | Rule::tree1
        | Rule::weighted
        | Rule::simple
        | Rule::tree_only
        | Rule::fail
        | Rule::neg
        | Rule::empty => "a name tree (a path, '~', '!', '$' or '(')",
        Rule::weight => "a weight",
        Rule::star => "'*'",
        Rule::pipe => "'|'",
        Rule::amp => "'&'",
        Rule::rparen => "')'",
        Rule::arrow => "'=>'",
        Rule::semi => "';'",
        Rule::EOI => "end of input",
        _ => return None,
    })
}

/// Turn a pest error into ours, phrasing the expected rules in words.
fn convert(input: &str, e: pest::error::Error<Rule>) -> ParseError {
    let offset = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let mut words: Vec<&'static str> = Vec::new();
    let mut wants_arrow = false;
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
        for r in positives {
            wants_arrow |= *r == Rule::arrow;
            if let Some(w) = rule_words(*r)
                && !words.contains(&w)
            {
                words.push(w);
            }
        }
    }
    // After a complete path, a trailing '/' or a bad character: say what a label is.
    let next = input[offset.min(input.len())..].chars().next();
    if words.is_empty() {
        words.push("valid dtab syntax");
    }
    if next == Some('\\') && !words.contains(&"a label") {
        words.insert(0, "an escape \\xHH");
    }
    let expected = join_words(&words);
    let context = if wants_arrow {
        DtabParser::parse(
            Rule::prefix_lead,
            input.trim_start_matches(is_ws_or_comment_start),
        )
        .ok()
        .and_then(|mut p| p.next())
        .map(|p| format!("after the prefix {}", p.as_str().trim()))
    } else {
        None
    };
    ParseError::at(input, offset, expected, context)
}

fn is_ws_or_comment_start(c: char) -> bool {
    c.is_whitespace()
}

fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

fn parse_rule<'i>(rule: Rule, input: &'i str) -> Result<Pair<'i, Rule>, ParseError> {
    let mut pairs = DtabParser::parse(rule, input).map_err(|e| convert(input, e))?;
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

fn label_of(s: &str) -> Label {
    let src = s.as_bytes();
    let mut bytes = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        // The grammar guarantees `\x` is followed by two hex digits.
        if src[i] == b'\\' && i + 3 < src.len() {
            bytes.push((hex(src[i + 2]) << 4) | hex(src[i + 3]));
            i += 4;
        } else {
            bytes.push(src[i]);
            i += 1;
        }
    }
    // The grammar only produces non-empty labels.
    Label::new(bytes).unwrap_or_else(|_| unreachable_label())
}

#[cold]
fn unreachable_label() -> Label {
    // Never reached: `label` matches one or more characters.
    Label::new(vec![b'_']).unwrap_or_else(|_| unreachable_label())
}

fn path_of(p: Pair<'_, Rule>) -> Path {
    Path::from_labels(
        p.into_inner()
            .filter(|l| l.as_rule() == Rule::label)
            .map(|l| label_of(l.as_str()))
            .collect::<Vec<_>>(),
    )
}

fn prefix_of(p: Pair<'_, Rule>) -> Prefix {
    Prefix::new(
        p.into_inner()
            .filter_map(|e| match e.as_rule() {
                Rule::any_elem => Some(PrefixElem::Any),
                Rule::label => Some(PrefixElem::Label(label_of(e.as_str()))),
                _ => None,
            })
            .collect(),
    )
}

fn tree_of(p: Pair<'_, Rule>) -> NameTree<Path> {
    let mut alts: Vec<NameTree<Path>> = p
        .into_inner()
        .filter(|c| c.as_rule() == Rule::tree1)
        .map(tree1_of)
        .collect();
    if alts.len() == 1 {
        alts.pop().unwrap_or(NameTree::Neg)
    } else {
        NameTree::Alt(alts)
    }
}

fn tree1_of(p: Pair<'_, Rule>) -> NameTree<Path> {
    let mut members: Vec<Weighted<Path>> = p
        .into_inner()
        .filter(|c| c.as_rule() == Rule::weighted)
        .map(weighted_of)
        .collect();
    if members.len() == 1 {
        // A weight on a lone member is dropped, as Finagle does.
        members.pop().map_or(NameTree::Neg, |w| w.tree)
    } else {
        NameTree::Union(members)
    }
}

fn weighted_of(p: Pair<'_, Rule>) -> Weighted<Path> {
    let mut weight = DEFAULT_WEIGHT;
    let mut tree = NameTree::Neg;
    for c in p.into_inner() {
        match c.as_rule() {
            Rule::weight => weight = parse_weight(c.as_str()),
            Rule::simple => tree = simple_of(c),
            _ => {}
        }
    }
    Weighted::new(weight, tree)
}

fn parse_weight(s: &str) -> f64 {
    // `1.` and `.5` are valid Rust floats too once normalised.
    let norm = if let Some(stripped) = s.strip_suffix('.') {
        stripped.to_string()
    } else if s.starts_with('.') {
        format!("0{s}")
    } else {
        s.to_string()
    };
    norm.parse().unwrap_or(DEFAULT_WEIGHT)
}

fn simple_of(p: Pair<'_, Rule>) -> NameTree<Path> {
    let mut inner = p.into_inner();
    match inner.next() {
        Some(c) => match c.as_rule() {
            Rule::tree => tree_of(c),
            Rule::path => NameTree::Leaf(path_of(c)),
            Rule::fail => NameTree::Fail,
            Rule::neg => NameTree::Neg,
            Rule::empty => NameTree::Empty,
            _ => NameTree::Neg,
        },
        None => NameTree::Neg,
    }
}

fn dentry_of(p: Pair<'_, Rule>) -> Dentry {
    let mut prefix = Prefix::default();
    let mut dst = NameTree::Neg;
    for c in p.into_inner() {
        match c.as_rule() {
            Rule::prefix => prefix = prefix_of(c),
            Rule::tree => dst = tree_of(c),
            _ => {}
        }
    }
    Dentry::new(prefix, dst)
}

fn first_inner<'i>(p: Pair<'i, Rule>, rule: Rule) -> Option<Pair<'i, Rule>> {
    p.into_inner().find(|c| c.as_rule() == rule)
}

// === FromStr ===

impl FromStr for Path {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Path, ParseError> {
        let p = parse_rule(Rule::path_only, s)?;
        Ok(first_inner(p, Rule::path).map(path_of).unwrap_or_default())
    }
}

impl FromStr for Prefix {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Prefix, ParseError> {
        let p = parse_rule(Rule::prefix_only, s)?;
        Ok(first_inner(p, Rule::prefix)
            .map(prefix_of)
            .unwrap_or_default())
    }
}

impl FromStr for NameTree<Path> {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<NameTree<Path>, ParseError> {
        let p = parse_rule(Rule::tree_only, s)?;
        Ok(first_inner(p, Rule::tree)
            .map(tree_of)
            .unwrap_or(NameTree::Neg))
    }
}

impl FromStr for Dentry {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Dentry, ParseError> {
        let p = parse_rule(Rule::dentry_only, s)?;
        first_inner(p, Rule::dentry)
            .map(dentry_of)
            .ok_or_else(|| ParseError::at(s, 0, "a dentry".into(), None))
    }
}

impl FromStr for Dtab {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Dtab, ParseError> {
        let p = parse_rule(Rule::dtab, s)?;
        Ok(Dtab::new(
            p.into_inner()
                .filter(|c| c.as_rule() == Rule::dentry)
                .map(dentry_of)
                .collect(),
        ))
    }
}

impl Dtab {
    /// Parse, and on failure report every bad dentry rather than the first
    /// only (for `switchyard dtab check` and config validation).
    ///
    /// The text is cut at each `;` that stands where whitespace may stand, and
    /// each piece is parsed alone, with positions kept relative to the whole.
    pub fn parse_all(s: &str) -> Result<Dtab, Vec<ParseError>> {
        let first = match s.parse::<Dtab>() {
            Ok(d) => return Ok(d),
            Err(e) => e,
        };
        let mut errors = Vec::new();
        let pieces = split_dentries(s);
        let last = pieces.len().saturating_sub(1);
        for (i, (start, end)) in pieces.into_iter().enumerate() {
            let piece = &s[start..end];
            if is_blank(piece) {
                // Only the last piece (after a trailing ';') may be empty.
                if i != last || (i == 0 && last == 0) {
                    if i != last {
                        errors.push(ParseError::at(
                            s,
                            end,
                            "a dentry such as /svc => /#/io.l5d.fs".into(),
                            None,
                        ));
                    }
                }
                continue;
            }
            if let Err(e) = piece.parse::<Dentry>() {
                errors.push(e.offset_by(s, start));
            }
        }
        if errors.is_empty() {
            errors.push(first);
        }
        Err(errors)
    }
}

fn is_blank(piece: &str) -> bool {
    let mut in_comment = false;
    for c in piece.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
            }
        } else if c == '#' {
            in_comment = true;
        } else if !c.is_whitespace() {
            return false;
        }
    }
    true
}

/// Byte ranges of the pieces between top-level `;`s. A `#` starts a comment
/// only where whitespace may stand, i.e. not right after a label character
/// or a `/` (there it is part of a label).
fn split_dentries(s: &str) -> Vec<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'#' {
            let in_label = i > 0 && {
                let p = bytes[i - 1];
                super::path::is_showable(p) || p == b'/'
            };
            if !in_label {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
        } else if b == b';' {
            out.push((start, i));
            start = i + 1;
        }
        i += 1;
    }
    out.push((start, bytes.len()));
    out
}
