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

/// A weight as Finagle prints it: Java's `%.2f`, which rounds the shortest
/// decimal form of the double half-up (`0.125` → `0.13`, `1.005` → `1.01`,
/// `1.001` → `1.00`). Done on the decimal digits, never in floating point,
/// so large weights print exactly as Java prints them.
pub(crate) fn fmt_weight(w: f64) -> String {
    if w.is_nan() {
        return "NaN".into();
    }
    if w.is_infinite() {
        return if w > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `Display` for f64 is the shortest round-tripping decimal and
    // never uses an exponent.
    let shortest = format!("{}", w.abs());
    let (int, frac) = shortest.split_once('.').unwrap_or((&shortest, ""));
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes().chain(*b"00").take(2))
        .collect();
    if frac.as_bytes().get(2).is_some_and(|&d| d >= b'5') {
        // Add one unit in the last place, carrying leftwards.
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            match digits.get_mut(i) {
                Some(d) if *d == b'9' => *d = b'0',
                Some(d) => {
                    *d += 1;
                    break;
                }
                None => break,
            }
        }
    }
    let split = digits.len().saturating_sub(2);
    let (ip, fp) = digits.split_at(split);
    // Java keeps the sign even when the rounded value is zero (`-0.00`).
    let negative = w.is_sign_negative();
    format!(
        "{}{}.{}",
        if negative { "-" } else { "" },
        String::from_utf8_lossy(ip),
        String::from_utf8_lossy(fp)
    )
}

impl<T: fmt::Display> NameTree<T> {
    /// Finagle's `show`: the top level, where an Alt needs no parentheses.
    fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws.iter().try_for_each(|w| w.tree.show(f)),
            NameTree::Alt(ts) if ts.len() == 1 => ts.iter().try_for_each(|t| t.show(f)),
            NameTree::Alt(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" | ")?;
                    }
                    t.show1(f)?;
                }
                Ok(())
            }
            _ => self.show1(f),
        }
    }

    /// Finagle's `show1`: an Alt member, where a Union needs no parentheses
    /// (`&` binds tighter than `|`) but an Alt does.
    fn show1(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => ws.iter().try_for_each(|w| w.tree.show1(f)),
            NameTree::Alt(ts) if ts.len() == 1 => ts.iter().try_for_each(|t| t.show1(f)),
            NameTree::Union(ws) => {
                for (i, w) in ws.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" & ")?;
                    }
                    if w.weight != DEFAULT_WEIGHT {
                        write!(f, "{}*", fmt_weight(w.weight))?;
                    }
                    w.tree.show_simple(f)?;
                }
                Ok(())
            }
            NameTree::Alt(_) => self.show_parens(f),
            _ => self.show_simple(f),
        }
    }

    /// Finagle's `showSimple`: a Union member, where any Alt or Union needs
    /// parentheses.
    fn show_simple(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameTree::Union(ws) if ws.len() == 1 => {
                ws.iter().try_for_each(|w| w.tree.show_simple(f))
            }
            NameTree::Alt(ts) if ts.len() == 1 => ts.iter().try_for_each(|t| t.show_simple(f)),
            NameTree::Union(_) | NameTree::Alt(_) => self.show_parens(f),
            NameTree::Leaf(t) => write!(f, "{t}"),
            NameTree::Fail => f.write_str("!"),
            NameTree::Neg => f.write_str("~"),
            NameTree::Empty => f.write_str("$"),
        }
    }

    fn show_parens(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        self.show(f)?;
        f.write_str(")")
    }
}

impl<T: fmt::Display> fmt::Display for NameTree<T> {
    /// Finagle's `NameTree.show`: re-parseable, unsimplified; weights other
    /// than exactly 1.0 as `%.2f*`, no spaces around `*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.show(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtab::Path;

    fn leaf(s: &str) -> NameTree<Path> {
        NameTree::Leaf(s.parse().unwrap())
    }
    fn w(weight: f64, tree: NameTree<Path>) -> Weighted<Path> {
        Weighted::new(weight, tree)
    }

    #[test]
    fn weights_print_like_java_percent_2f() {
        for (w, s) in [
            (1.0, "1.00"),
            (0.5, "0.50"),
            (2.0, "2.00"),
            (0.0, "0.00"),
            (0.125, "0.13"),
            (1.001, "1.00"),
            (1.005, "1.01"),
            (0.995, "1.00"),
            (9.995, "10.00"),
            (99.999, "100.00"),
            (2.5, "2.50"),
            (0.7, "0.70"),
            (1e21, "1000000000000000000000.00"),
            (1e-7, "0.00"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(fmt_weight(w), s, "{w}");
        }
    }

    #[test]
    fn constants_and_leaves() {
        assert_eq!(NameTree::<Path>::Neg.to_string(), "~");
        assert_eq!(NameTree::<Path>::Fail.to_string(), "!");
        assert_eq!(NameTree::<Path>::Empty.to_string(), "$");
        assert_eq!(leaf("/a/b").to_string(), "/a/b");
    }

    #[test]
    fn alt_and_union_parentheses() {
        let (a, b, c, d) = (leaf("/a"), leaf("/b"), leaf("/c"), leaf("/d"));
        let alt = |ts: Vec<NameTree<Path>>| NameTree::Alt(ts);
        let uni = |ws: Vec<Weighted<Path>>| NameTree::Union(ws);
        // Top-level Alt: no parentheses, " | ".
        assert_eq!(alt(vec![a.clone(), b.clone()]).to_string(), "/a | /b");
        // Alt inside Alt: parenthesised.
        assert_eq!(
            alt(vec![a.clone(), alt(vec![b.clone(), c.clone()])]).to_string(),
            "/a | (/b | /c)"
        );
        // Union inside Alt: not parenthesised.
        assert_eq!(
            alt(vec![
                uni(vec![w(1.0, a.clone()), w(1.0, b.clone())]),
                uni(vec![w(1.0, c.clone()), w(1.0, d.clone())])
            ])
            .to_string(),
            "/a & /b | /c & /d"
        );
        // Alt and Union inside Union: parenthesised; weights %.2f, no spaces.
        assert_eq!(
            uni(vec![
                w(3.0, alt(vec![a.clone(), b.clone()])),
                w(0.5, uni(vec![w(1.0, c.clone()), w(2.0, d.clone())])),
                w(0.0, NameTree::Fail),
            ])
            .to_string(),
            "3.00*(/a | /b) & 0.50*(/c & 2.00*/d) & 0.00*!"
        );
        // Weight exactly 1.0 is omitted; 1.001 prints as 1.00.
        assert_eq!(
            uni(vec![w(1.0, a.clone()), w(1.001, b.clone())]).to_string(),
            "/a & 1.00*/b"
        );
        // Single-member Alt/Union print as their member, weight dropped,
        // at every level.
        assert_eq!(uni(vec![w(2.0, a.clone())]).to_string(), "/a");
        assert_eq!(
            alt(vec![alt(vec![a.clone(), b.clone()])]).to_string(),
            "/a | /b"
        );
        assert_eq!(
            alt(vec![c.clone(), alt(vec![alt(vec![a.clone(), b.clone()])])]).to_string(),
            "/c | (/a | /b)"
        );
        assert_eq!(
            uni(vec![
                w(1.0, c.clone()),
                w(1.0, uni(vec![w(5.0, alt(vec![a, b]))]))
            ])
            .to_string(),
            "/c & (/a | /b)"
        );
        // Show does not simplify.
        assert_eq!(
            alt(vec![NameTree::Neg, c.clone(), c]).to_string(),
            "~ | /c | /c"
        );
    }

    #[test]
    fn map_and_leaves_keep_shape() {
        let t: NameTree<Path> = "/a & 2 * (/b | ~)".parse().unwrap();
        assert_eq!(t.leaves().len(), 2);
        let m = t.map(&mut |p: &Path| p.len());
        assert_eq!(m.to_string(), "1 & 2.00*(1 | ~)");
    }
}
