//! Binding: Finagle's `Namer.bind` over `Dtab.lookup`, generic over what a
//! bound leaf is, so the same code serves `switchyard dtab bind` (system
//! namers only, no I/O) and the live binder in `naming` (namers that watch
//! files and resolve hosts). CONTRACT: implemented by the dtab-binding work.

use super::path::Path;
use super::tree::NameTree;

/// Finagle's `namerMaxDepth`.
pub const MAX_DEPTH: usize = 100;

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
}

/// Bind `path` against `dtab` and `namers` (Finagle's DefaultInterpreter):
/// look up in the dtab, fall to the namers when the lookup is exactly `~`,
/// recurse up to [`MAX_DEPTH`], and return the simplified bound tree (no Alt).
pub fn bind<B: Clone>(
    dtab: &super::Dtab,
    path: &Path,
    namers: &mut impl Namers<B>,
) -> Result<NameTree<B>, BindError> {
    let _ = (dtab, path, namers);
    todo!("CONTRACT: implemented by the dtab-binding work")
}
