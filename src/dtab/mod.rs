//! The dtab language: Finagle's name algebra, with no I/O.
//!
//! * [`Path`] and [`Label`]: names (`/svc/users`).
//! * [`NameTree`]: what a name becomes (`/a | 2 * /b & /c`, `~`, `!`, `$`).
//! * [`Dentry`] and [`Prefix`]: one rewrite rule (`/svc/* => /srv`).
//! * [`Dtab`]: an ordered table of dentries, with one-step `lookup`.
//!
//! Every type's `Display` is Finagle's canonical show form and its `FromStr`
//! is the parser of `grammar/dtab.pest`. The semantics follow
//! `shared/docs/dtab-semantics.md` to the letter. This module must stay free of
//! async runtimes, HTTP and I/O (CI checks it).

mod bind;
mod delegate;
mod dentry;
mod parse;
mod path;
mod simplify;
pub mod system;
mod table;
mod tree;

pub use bind::{
    BindError, MAX_DEPTH, MAX_LOOKUPS, MAX_NESTING, Name, NamerAnswer, Namers, bind, bind_tree,
};
pub use delegate::{
    AddrJson, AddressJson, BoundJson, DELEGATE_MAX_DEPTH_MESSAGE, DELEGATE_MAX_NESTING,
    DelegateError, DelegateTree, delegate, try_delegate,
};
pub use dentry::{Dentry, Prefix, PrefixElem};
pub use parse::ParseError;
#[doc(hidden)]
pub use parse::precise;
pub use path::{Label, LabelError, Path, is_showable};
pub use system::{SystemBound, SystemNamers};
pub use table::Dtab;
pub use tree::{DEFAULT_WEIGHT, NameTree, Weighted};
