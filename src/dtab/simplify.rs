//! Finagle's `NameTree.simplified` and `NameTree.eval`: the two ways a tree is
//! reduced after binding, kept separate from the algebra so their exact (and
//! sometimes surprising) rules live in one place (spec §6.4, §6.5).

use super::tree::{NameTree, Weighted};

impl<T: Clone> NameTree<T> {
    /// An evaluation-equivalent tree with the `~` branches gone.
    ///
    /// Alt keeps its children up to and including the first `!` and drops
    /// `~`; Union drops both `!` and `~` members (so `! & !` is `~`); a
    /// single survivor replaces its parent (its weight is lost); nothing
    /// survives → `~`. Nested Alts and Unions are not flattened, as in
    /// Finagle. The result is a fixpoint: `t.simplified().simplified() ==
    /// t.simplified()`.
    pub fn simplified(&self) -> NameTree<T> {
        match self {
            NameTree::Alt(ts) => match ts.as_slice() {
                [] => NameTree::Neg,
                [one] => one.simplified(),
                _ => {
                    let mut kept = Vec::with_capacity(ts.len());
                    for t in ts {
                        match t.simplified() {
                            NameTree::Neg => {}
                            NameTree::Fail => {
                                kept.push(NameTree::Fail);
                                break;
                            }
                            other => kept.push(other),
                        }
                    }
                    collapse(kept, NameTree::Alt)
                }
            },
            NameTree::Union(ws) => match ws.as_slice() {
                [] => NameTree::Neg,
                [one] => one.tree.simplified(),
                _ => {
                    let kept: Vec<Weighted<T>> = ws
                        .iter()
                        .filter_map(|w| match w.tree.simplified() {
                            NameTree::Neg | NameTree::Fail => None,
                            t => Some(Weighted::new(w.weight, t)),
                        })
                        .collect();
                    match kept.len() {
                        0 => NameTree::Neg,
                        1 => kept.into_iter().next().map_or(NameTree::Neg, |w| w.tree),
                        _ => NameTree::Union(kept),
                    }
                }
            },
            other => other.clone(),
        }
    }
}

fn collapse<T>(
    mut kept: Vec<NameTree<T>>,
    make: fn(Vec<NameTree<T>>) -> NameTree<T>,
) -> NameTree<T> {
    match kept.len() {
        0 => NameTree::Neg,
        1 => kept.pop().unwrap_or(NameTree::Neg),
        _ => make(kept),
    }
}

/// The result of evaluating a tree with weights ignored: the node is `~`, `!`
/// or a set of leaves.
enum Eval<T> {
    Neg,
    Fail,
    Set(Vec<T>),
}

impl<T: Clone + PartialEq> NameTree<T> {
    /// Finagle's `NameTree.eval`: the set of leaves a request may reach, or
    /// `None` when the tree has no destination (`~` or `!`).
    ///
    /// `$` is the empty set; a Union is the union of its members that have a
    /// destination (`None` if none has); an Alt is its first child that does
    /// not evaluate to `~`, and `None` if that child is `!`. Weights are
    /// ignored; a single-member Union is its member (so `(!) | $` is
    /// `None`). The set is returned without duplicates, in first-seen order.
    pub fn eval(&self) -> Option<Vec<T>> {
        match self.eval_node() {
            Eval::Set(s) => Some(s),
            Eval::Neg | Eval::Fail => None,
        }
    }

    fn eval_node(&self) -> Eval<T> {
        match self {
            NameTree::Fail => Eval::Fail,
            NameTree::Neg => Eval::Neg,
            NameTree::Empty => Eval::Set(Vec::new()),
            NameTree::Leaf(t) => Eval::Set(vec![t.clone()]),
            // A lone member is its parent: `Union(!)` is `!`, not `~`.
            NameTree::Union(ws) if ws.len() == 1 => match ws.first() {
                Some(one) => one.tree.eval_node(),
                None => Eval::Neg,
            },
            NameTree::Union(ws) => {
                let mut any = false;
                let mut set = Vec::new();
                for w in ws {
                    if let Eval::Set(s) = w.tree.eval_node() {
                        any = true;
                        for t in s {
                            if !set.contains(&t) {
                                set.push(t);
                            }
                        }
                    }
                }
                if any { Eval::Set(set) } else { Eval::Neg }
            }
            NameTree::Alt(ts) => {
                for t in ts {
                    match t.eval_node() {
                        Eval::Neg => continue,
                        other => return other,
                    }
                }
                Eval::Neg
            }
        }
    }
}
