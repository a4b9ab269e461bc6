//! Dtabs: ordered lists of dentries, and Finagle's one-step `lookup`.

use std::fmt;
use std::sync::Arc;

use super::dentry::Dentry;
use super::path::Path;
use super::tree::{NameTree, Weighted};

/// A delegation table. Later dentries take precedence over earlier ones.
///
/// Cloning is cheap: the dentries are shared, since every request that
/// carries no override binds against the same base table.
#[derive(Clone, Default)]
pub struct Dtab {
    dentries: Arc<[Dentry]>,
}

impl PartialEq for Dtab {
    fn eq(&self, other: &Self) -> bool {
        self.dentries == other.dentries
    }
}

impl Dtab {
    /// The empty dtab.
    pub fn empty() -> Dtab {
        Dtab::default()
    }

    /// A dtab from dentries, in order.
    pub fn new(dentries: Vec<Dentry>) -> Dtab {
        Dtab {
            dentries: Arc::from(dentries),
        }
    }

    /// The dentries, in order.
    pub fn dentries(&self) -> &[Dentry] {
        &self.dentries
    }

    /// Number of dentries.
    pub fn len(&self) -> usize {
        self.dentries.len()
    }

    /// Whether there are no dentries.
    pub fn is_empty(&self) -> bool {
        self.dentries.is_empty()
    }

    /// `self ++ other`: `other`'s dentries after ours, so they win on lookup.
    pub fn concat(&self, other: &Dtab) -> Dtab {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut v = Vec::with_capacity(self.len() + other.len());
        v.extend_from_slice(&self.dentries);
        v.extend_from_slice(&other.dentries);
        Dtab::new(v)
    }

    /// The dentries matching `path`, last first, each with its rewritten
    /// tree (residual appended to every leaf).
    pub fn matches<'a>(
        &'a self,
        path: &'a Path,
    ) -> impl Iterator<Item = (&'a Dentry, NameTree<Path>)> + 'a {
        self.dentries
            .iter()
            .rev()
            .filter(move |d| d.prefix.matches(path))
            .map(move |d| {
                let residual = path.drop(d.prefix.len());
                (d, d.dst.map(&mut |leaf: &Path| leaf.concat(&residual)))
            })
    }

    /// Finagle's `Dtab.lookup`: one rewrite step, unsimplified.
    /// No match → `~`; one → its tree; several → `Alt` of them, last first.
    pub fn lookup(&self, path: &Path) -> NameTree<Path> {
        let mut ms: Vec<NameTree<Path>> = self.matches(path).map(|(_, t)| t).collect();
        match ms.len() {
            0 => NameTree::Neg,
            1 => ms.pop().unwrap_or(NameTree::Neg),
            _ => NameTree::Alt(ms),
        }
    }
}

impl fmt::Display for Dtab {
    /// Finagle's `Dtab.show`: dentries joined by `;`, no trailing `;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.dentries.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dtab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dtab({self})")
    }
}

impl<'a> FromIterator<&'a Dentry> for Dtab {
    fn from_iter<I: IntoIterator<Item = &'a Dentry>>(iter: I) -> Self {
        Dtab::new(iter.into_iter().cloned().collect())
    }
}

#[allow(dead_code)]
fn _assert_weighted_used(_: Weighted<Path>) {}
