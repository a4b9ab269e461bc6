//! Binding: Finagle's `Namer.bind` over `Dtab.lookup`, generic over what a
//! bound leaf is, so the same code serves `switchyard dtab bind` (system
//! namers only, no I/O) and the live binder in `naming` (namers that watch
//! files and resolve hosts).

use super::path::Path;
use super::table::Dtab;
use super::tree::{NameTree, Weighted};

/// Finagle's `namerMaxDepth`.
pub const MAX_DEPTH: usize = 100;

/// How many path lookups one binding may do in all, across every branch.
pub const MAX_LOOKUPS: usize = 10_000;

/// A name a namer produced: a path still to be bound (looked up in the dtab
/// again), or a bound name.
#[derive(Clone, Debug, PartialEq)]
pub enum Name<B> {
    /// Bind this path again, starting with the dtab.
    Path(Path),
    /// Done: a concrete, addressable name.
    Bound(B),
}

/// What the namers answered for a path the dtab had nothing for.
#[derive(Clone, Debug, PartialEq)]
pub enum NamerAnswer<B> {
    /// A tree of names (`NameTree::Neg` when no namer knows the path).
    Tree(NameTree<Name<B>>),
    /// The namer has not answered yet (a file not read yet, DNS in flight).
    Pending,
    /// The namer failed for this path; binding reports this message.
    Error(String),
}

/// The namers consulted after the dtab: configured ones (`/#/...`), then the
/// system namers (`/$/...`).
pub trait Namers<B> {
    /// Called only when `Dtab::lookup(path)` is exactly `~`.
    fn lookup(&mut self, path: &Path) -> NamerAnswer<B>;
}

/// Why a path could not be bound.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BindError {
    /// The delegation went deeper than [`MAX_DEPTH`] (a cycle or a growing rewrite).
    #[error("Max recursion level: 100 reached in Namer lookup")]
    MaxDepth,
    /// A namer failed.
    #[error("{message}")]
    Namer {
        /// The path the namer was asked about.
        path: Path,
        /// What went wrong.
        message: String,
    },
    /// Some namer has not answered yet.
    #[error("binding is pending")]
    Pending,
    /// The delegation fanned out into more than [`MAX_LOOKUPS`] lookups
    /// (unions or alternatives that multiply at every level); Finagle would
    /// grind on, we refuse, since a request header can carry such a dtab.
    #[error("Binding needed more than 10000 lookups")]
    TooManyLookups,
}

/// Bind `path` against `dtab` and `namers` (Finagle's DefaultInterpreter):
/// look up in the dtab, fall to the namers when the lookup is exactly `~`,
/// recurse up to [`MAX_DEPTH`], and return the simplified bound tree (no Alt).
///
/// Alt children bind lazily, in order: the first that is not `~` decides
/// (`!` included). Union members all bind; those that succeed are kept
/// with their weights, and errors are ignored unless every member failed.
/// Errors anywhere else abort the binding.
pub fn bind<B: Clone>(
    dtab: &Dtab,
    path: &Path,
    namers: &mut impl Namers<B>,
) -> Result<NameTree<B>, BindError> {
    bind_tree(dtab, &NameTree::Leaf(Name::Path(path.clone())), namers)
}

/// [`bind`] for a whole tree (Finagle's `Namer.bind(lookup, tree)`), e.g. a
/// router's `dst` tree; the tree itself is at depth 0.
pub fn bind_tree<B: Clone>(
    dtab: &Dtab,
    tree: &NameTree<Name<B>>,
    namers: &mut impl Namers<B>,
) -> Result<NameTree<B>, BindError> {
    let mut b = Binder {
        dtab,
        namers,
        lookups: 0,
    };
    Ok(b.bind(tree, 0)?.simplified())
}

/// One step of binding as the binder sees it: the dtab first, the namers
/// when the dtab's answer is exactly `~` (spec §6.1).
pub fn lookup<B>(
    dtab: &Dtab,
    path: &Path,
    namers: &mut impl Namers<B>,
) -> Result<NameTree<Name<B>>, BindError> {
    match dtab.lookup(path) {
        NameTree::Neg => match namers.lookup(path) {
            NamerAnswer::Tree(t) => Ok(t),
            NamerAnswer::Pending => Err(BindError::Pending),
            NamerAnswer::Error(message) => Err(BindError::Namer {
                path: path.clone(),
                message,
            }),
        },
        t => Ok(t.map(&mut |p: &Path| Name::Path(p.clone()))),
    }
}

struct Binder<'a, N> {
    dtab: &'a Dtab,
    namers: &'a mut N,
    lookups: usize,
}

impl<N> Binder<'_, N> {
    fn bind<B: Clone>(
        &mut self,
        tree: &NameTree<Name<B>>,
        depth: usize,
    ) -> Result<NameTree<B>, BindError>
    where
        N: Namers<B>,
    {
        // Checked before the node is looked at, as Finagle does: even a
        // bound leaf reached too deep is an error.
        if depth > MAX_DEPTH {
            return Err(BindError::MaxDepth);
        }
        match tree {
            NameTree::Leaf(Name::Path(p)) => {
                self.lookups += 1;
                if self.lookups > MAX_LOOKUPS {
                    return Err(BindError::TooManyLookups);
                }
                let next = lookup(self.dtab, p, self.namers)?;
                self.bind(&next, depth + 1)
            }
            NameTree::Leaf(Name::Bound(b)) => Ok(NameTree::Leaf(b.clone())),
            NameTree::Neg => Ok(NameTree::Neg),
            NameTree::Fail => Ok(NameTree::Fail),
            NameTree::Empty => Ok(NameTree::Empty),
            NameTree::Alt(ts) => {
                for t in ts {
                    match self.bind(t, depth)? {
                        NameTree::Neg => continue,
                        other => return Ok(other),
                    }
                }
                Ok(NameTree::Neg)
            }
            NameTree::Union(ws) => match ws.as_slice() {
                [] => Ok(NameTree::Neg),
                [one] => self.bind(&one.tree, depth),
                _ => {
                    let mut oks = Vec::with_capacity(ws.len());
                    let mut first_err = None;
                    for w in ws {
                        match self.bind(&w.tree, depth) {
                            Ok(t) => oks.push(Weighted::new(w.weight, t)),
                            // Too much work is not a member's failure: stop.
                            Err(BindError::TooManyLookups) => {
                                return Err(BindError::TooManyLookups);
                            }
                            Err(BindError::Pending) => {}
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    if !oks.is_empty() {
                        Ok(NameTree::Union(oks).simplified())
                    } else {
                        // No member bound: the first failure, else pending.
                        Err(first_err.unwrap_or(BindError::Pending))
                    }
                }
            },
        }
    }
}
