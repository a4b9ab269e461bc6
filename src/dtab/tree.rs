//! Name trees: what a dtab rewrites a path into.
//!
//! `NameTree<T>` is Finagle's algebra: leaves, fail-over (`|`, [`NameTree::Alt`]),
//! weighted union (`&`, [`NameTree::Union`]), and the three constants `~`
//! (negative: "not here, keep looking"), `!` (fail: "stop, it's an error") and
//! `$` (empty: "resolves, to nothing"). The tree is generic so the same shape
//! carries unbound paths (`NameTree<Path>`) and bound names after binding.

use std::fmt;

/// A name tree over leaves of type `T`.
#[derive(Clone, Debug, PartialEq)]
pub enum NameTree<T> {
    /// A single name.
    Leaf(T),
    /// Fail-over: the first child that is not negative (`a | b`).
    Alt(Vec<NameTree<T>>),
    /// Weighted split between children (`2 * a & 1 * b`).
    Union(Vec<Weighted<T>>),
    /// Negative: no binding here; an enclosing Alt tries its next branch (`~`).
    Neg,
    /// Failure: stop, no fall-back (`!`).
    Fail,
    /// Resolves, to an empty set of endpoints (`$`).
    Empty,
}

/// A Union member with its weight (default 1.0).
#[derive(Clone, Debug, PartialEq)]
pub struct Weighted<T> {
    /// Relative weight, finite and >= 0.
    pub weight: f64,
    /// The member.
    pub tree: NameTree<T>,
}

/// The weight a member has when none is written.
pub const DEFAULT_WEIGHT: f64 = 1.0;

impl<T> Weighted<T> {
    /// A member with the given weight.
    pub fn new(weight: f64, tree: NameTree<T>) -> Self {
        Weighted { weight, tree }
    }
}

impl<T> NameTree<T> {
    /// Apply `f` to every leaf, keeping the shape and weights.
    pub fn map<U>(&self, f: &mut impl FnMut(&T) -> U) -> NameTree<U> {
        match self {
            NameTree::Leaf(t) => NameTree::Leaf(f(t)),
            NameTree::Alt(ts) => NameTree::Alt(ts.iter().map(|t| t.map(f)).collect()),
            NameTree::Union(ws) => NameTree::Union(
                ws.iter()
                    .map(|w| Weighted::new(w.weight, w.tree.map(f)))
                    .collect(),
            ),
            NameTree::Neg => NameTree::Neg,
            NameTree::Fail => NameTree::Fail,
            NameTree::Empty => NameTree::Empty,
        }
    }

    /// Every leaf, left to right.
    pub fn leaves(&self) -> Vec<&T> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a T>) {
        match self {
            NameTree::Leaf(t) => out.push(t),
            NameTree::Alt(ts) => ts.iter().for_each(|t| t.collect_leaves(out)),
            NameTree::Union(ws) => ws.iter().for_each(|w| w.tree.collect_leaves(out)),
            NameTree::Neg | NameTree::Fail | NameTree::Empty => {}
        }
    }
}

// === impl Display (Finagle's NameTree.show) ===

/// Finagle prints weights with Java's `%.2f` (half-up on the decimal form).
pub(crate) fn fmt_weight(w: f64) -> String {
    format!("{:.2}", round_half_up_2(w))
}

fn round_half_up_2(w: f64) -> f64 {
    // Round on the shortest decimal representation, as Java's Formatter does
    // via BigDecimal(Double.toString(w)).
    let s = format!("{w}");
    match s.split_once('.') {
        Some((_, frac)) if frac.len() > 2 => {
            let scaled: f64 = format!("{}{}", &s[..s.len() - frac.len() - 1], &frac[..2])
                .parse()
                .unwrap_or(w * 100.0);
            let scaled = scaled.abs();
            let third = frac.as_bytes()[2];
            let bumped = if third >= b'5' { scaled + 1.0 } else { scaled };
            bumped / 100.0
        }
        _ => w,
    }
}

impl<T: fmt::Display> NameTree<T> {
    fn fmt_simple(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Alt(ts) if ts.len() >= 2 => {
                f.write_str("(")?;
                self.fmt_top(f)?;
                f.write_str(")")
            }
            NameTree::Union(ws) if ws.len() >= 2 => {
                f.write_str("(")?;
                self.fmt_top(f)?;
                f.write_str(")")
            }
            _ => self.fmt_top(f),
        }
    }

    fn fmt_top(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Leaf(t) => write!(f, "{t}"),
            NameTree::Neg => f.write_str("~"),
            NameTree::Fail => f.write_str("!"),
            NameTree::Empty => f.write_str("$"),
            NameTree::Alt(ts) => match ts.as_slice() {
                [] => Ok(()),
                [one] => one.fmt_top(f),
                _ => {
                    for (i, t) in ts.iter().enumerate() {
                        if i > 0 {
                            f.write_str(" | ")?;
                        }
                        match t {
                            NameTree::Alt(c) if c.len() >= 2 => t.fmt_simple(f)?,
                            _ => t.fmt_top(f)?,
                        }
                    }
                    Ok(())
                }
            },
            NameTree::Union(ws) => match ws.as_slice() {
                [] => Ok(()),
                [one] => one.tree.fmt_top(f),
                _ => {
                    for (i, w) in ws.iter().enumerate() {
                        if i > 0 {
                            f.write_str(" & ")?;
                        }
                        if w.weight != DEFAULT_WEIGHT {
                            write!(f, "{}*", fmt_weight(w.weight))?;
                        }
                        w.tree.fmt_simple(f)?;
                    }
                    Ok(())
                }
            },
        }
    }
}

impl<T: fmt::Display> fmt::Display for NameTree<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_top(f)
    }
}
