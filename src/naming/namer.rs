//! The live namer contract: what a configured namer (`/#/<prefix>`) offers the
//! binder.

use tokio::sync::watch;

use super::{Activity, Bound};
use crate::dtab::{Label, Name, NameTree, Path};

/// A live answer from a namer: the tree it currently makes of a path, as a
/// watch so the binder can re-bind when (and only when) that tree changes.
pub type NameWatch = watch::Receiver<Activity<NameTree<Name<Bound>>>>;

/// A configured namer, addressed in dtabs as `/#/<prefix>/...` (Linkerd 1's
/// `Namer`, minus Finagle's `Activity` machinery).
///
/// The interpreter calls `lookup` synchronously while binding, so it must be
/// cheap and must not block on I/O: implementations start (or share) a
/// watcher and return its receiver, whose current value may be `Pending`.
/// A namer answering `Neg` lets the next matching namer (then the system
/// namers) try.
pub trait Namer: Send + Sync + 'static {
    /// Subscribe to `path`, already stripped of this namer's prefix.
    fn lookup(&self, path: &Path) -> NameWatch;
}

/// The dtab prefix of a configured namer: Linkerd config says
/// `prefix: /io.l5d.fs`, dtabs say `/#/io.l5d.fs`. A prefix that already
/// starts with `#` is kept as it is.
pub fn namer_prefix(prefix: &Path) -> Path {
    if prefix.elems().first().map(Label::as_bytes) == Some(b"#".as_slice()) {
        return prefix.clone();
    }
    match Label::new(b"#".to_vec()) {
        Ok(hash) => Path::from_labels(vec![hash]).concat(prefix),
        Err(_) => prefix.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_gets_hash() {
        let p: Path = "/io.l5d.fs".parse().unwrap();
        assert_eq!(namer_prefix(&p).to_string(), "/#/io.l5d.fs");
        let q: Path = "/#/io.l5d.fs".parse().unwrap();
        assert_eq!(namer_prefix(&q).to_string(), "/#/io.l5d.fs");
    }
}
