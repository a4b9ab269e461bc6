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

/// How deep binding may recurse, counting both lookups and levels of
/// Alt/Union nesting, so that a hostile dtab (one nested as deep as the
/// parser allows per rewrite, 100 rewrites) cannot exhaust a thread's stack.
pub const MAX_NESTING: usize = 1_000;

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
    /// Lookups and Alt/Union nesting together went deeper than
    /// [`MAX_NESTING`]; no real dtab does that.
    #[error("Name trees nested more than 1000 levels deep while binding")]
    TooDeeplyNested,
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
        nesting: 0,
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
    /// Current recursion depth (lookups and nesting).
    nesting: usize,
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
        if self.nesting >= MAX_NESTING {
            return Err(BindError::TooDeeplyNested);
        }
        self.nesting += 1;
        let r = self.bind_node(tree, depth);
        self.nesting -= 1;
        r
    }

    // `bind` and `bind_node` recurse once per level of nesting and per
    // lookup, so they only dispatch; the work is in small helpers, which
    // keeps each level's stack use small even in debug builds.
    fn bind_node<B: Clone>(
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
            NameTree::Leaf(Name::Path(p)) => self.bind_path(p, depth),
            NameTree::Leaf(Name::Bound(b)) => Ok(NameTree::Leaf(b.clone())),
            NameTree::Neg => Ok(NameTree::Neg),
            NameTree::Fail => Ok(NameTree::Fail),
            NameTree::Empty => Ok(NameTree::Empty),
            NameTree::Alt(ts) => self.bind_alt(ts, depth),
            NameTree::Union(ws) => self.bind_union(ws, depth),
        }
    }

    #[inline(never)]
    fn bind_path<B: Clone>(&mut self, p: &Path, depth: usize) -> Result<NameTree<B>, BindError>
    where
        N: Namers<B>,
    {
        self.lookups += 1;
        if self.lookups > MAX_LOOKUPS {
            return Err(BindError::TooManyLookups);
        }
        let next = lookup(self.dtab, p, self.namers)?;
        self.bind(&next, depth + 1)
    }

    /// Lazily, in order: the first child that is not `~` decides.
    #[inline(never)]
    fn bind_alt<B: Clone>(
        &mut self,
        ts: &[NameTree<Name<B>>],
        depth: usize,
    ) -> Result<NameTree<B>, BindError>
    where
        N: Namers<B>,
    {
        for t in ts {
            match self.bind(t, depth)? {
                NameTree::Neg => continue,
                other => return Ok(other),
            }
        }
        Ok(NameTree::Neg)
    }

    /// Every member: the successes with their weights, simplified; if none
    /// succeeded, the first failure, else pending.
    #[inline(never)]
    fn bind_union<B: Clone>(
        &mut self,
        ws: &[Weighted<Name<B>>],
        depth: usize,
    ) -> Result<NameTree<B>, BindError>
    where
        N: Namers<B>,
    {
        if let [one] = ws {
            return self.bind(&one.tree, depth);
        }
        if ws.is_empty() {
            return Ok(NameTree::Neg);
        }
        let mut oks = Vec::with_capacity(ws.len());
        let mut first_err = None;
        for w in ws {
            match self.bind(&w.tree, depth) {
                Ok(t) => oks.push(Weighted::new(w.weight, t)),
                // Too much work is not a member's failure: stop.
                Err(e @ (BindError::TooManyLookups | BindError::TooDeeplyNested)) => {
                    return Err(e);
                }
                Err(BindError::Pending) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if oks.is_empty() {
            Err(first_err.unwrap_or(BindError::Pending))
        } else {
            Ok(NameTree::Union(oks).simplified())
        }
    }
}
