//! Dtabs: ordered lists of dentries, and Finagle's one-step `lookup`.
//!
//! Finagle's `Dtab.lookup` scans every dentry, last to first. A base dtab of a
//! few thousand dentries is looked up on every binding, so we index the
//! dentries by the first element of their prefix: a lookup only examines the
//! dentries whose first prefix element is the path's first label, plus those
//! whose prefix is `/` or starts with `*`. The result is exactly the scan's.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::dentry::{Dentry, PrefixElem};
use super::path::{Label, Path};
use super::tree::NameTree;

/// A delegation table. Later dentries take precedence over earlier ones.
///
/// Cloning is cheap (the dentries and their index are shared), since every
/// request that carries no override binds against the same base table.
#[derive(Clone, Default)]
pub struct Dtab {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    dentries: Vec<Dentry>,
    /// Dentries whose prefix starts with a literal label, by that label; the
    /// positions ascend.
    by_first: HashMap<Label, Vec<u32>>,
    /// Dentries whose prefix is `/` or starts with `*` (they may match any
    /// path); ascending.
    any_first: Vec<u32>,
}

impl PartialEq for Dtab {
    fn eq(&self, other: &Self) -> bool {
        self.inner.dentries == other.inner.dentries
    }
}

impl Dtab {
    /// The empty dtab.
    pub fn empty() -> Dtab {
        Dtab::default()
    }

    /// A dtab from dentries, in order (builds the lookup index).
    pub fn new(dentries: Vec<Dentry>) -> Dtab {
        let mut by_first: HashMap<Label, Vec<u32>> = HashMap::new();
        let mut any_first = Vec::new();
        for (i, d) in dentries.iter().enumerate() {
            // More than 4 billion dentries cannot be held in memory anyway.
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match d.prefix.elems().first() {
                Some(PrefixElem::Label(l)) => by_first.entry(l.clone()).or_default().push(i),
                Some(PrefixElem::Any) | None => any_first.push(i),
            }
        }
        Dtab {
            inner: Arc::new(Inner {
                dentries,
                by_first,
                any_first,
            }),
        }
    }

    /// The dentries, in order.
    pub fn dentries(&self) -> &[Dentry] {
        &self.inner.dentries
    }

    /// Number of dentries.
    pub fn len(&self) -> usize {
        self.inner.dentries.len()
    }

    /// Whether there are no dentries.
    pub fn is_empty(&self) -> bool {
        self.inner.dentries.is_empty()
    }

    /// Finagle's `++`: `other`'s dentries after ours, so they win on lookup.
    pub fn concat(&self, other: &Dtab) -> Dtab {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut v = Vec::with_capacity(self.len() + other.len());
        v.extend_from_slice(self.dentries());
        v.extend_from_slice(other.dentries());
        Dtab::new(v)
    }

    /// The dentries matching `path`, last first, each with its rewritten
    /// tree (the residual appended to every leaf; elements matched by `*`
    /// are consumed).
    pub fn matches<'a>(
        &'a self,
        path: &'a Path,
    ) -> impl Iterator<Item = (&'a Dentry, NameTree<Path>)> + 'a {
        let literal: &[u32] = path
            .elems()
            .first()
            .and_then(|l| self.inner.by_first.get(l))
            .map_or(&[], Vec::as_slice);
        Candidates {
            dentries: &self.inner.dentries,
            literal,
            any: &self.inner.any_first,
        }
        .filter(move |d| d.prefix.matches(path))
        .map(move |d| {
            let residual = path.drop(d.prefix.len());
            (d, d.dst.map(&mut |leaf: &Path| leaf.concat(&residual)))
        })
    }

    /// Finagle's `Dtab.lookup`: one rewrite step, unsimplified.
    /// No match → `~`; one → its tree as is; several → `Alt` of them, last
    /// first.
    pub fn lookup(&self, path: &Path) -> NameTree<Path> {
        let mut ms = self.matches(path).map(|(_, t)| t);
        let Some(first) = ms.next() else {
            return NameTree::Neg;
        };
        match ms.next() {
            None => first,
            Some(second) => {
                let mut all = vec![first, second];
                all.extend(ms);
                NameTree::Alt(all)
            }
        }
    }
}

/// The dentries that may match a path, last first: the merge of two
/// ascending position lists, walked from their ends.
struct Candidates<'a> {
    dentries: &'a [Dentry],
    literal: &'a [u32],
    any: &'a [u32],
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a Dentry;

    fn next(&mut self) -> Option<&'a Dentry> {
        let i = match (self.literal.split_last(), self.any.split_last()) {
            (Some((&a, rest)), Some((&b, _))) if a > b => {
                self.literal = rest;
                a
            }
            (_, Some((&b, rest))) => {
                self.any = rest;
                b
            }
            (Some((&a, rest)), None) => {
                self.literal = rest;
                a
            }
            (None, None) => return None,
        };
        self.dentries.get(i as usize)
    }
}

impl fmt::Display for Dtab {
    /// Finagle's `Dtab.show`: dentries joined by `;`, no trailing `;`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.dentries().iter().enumerate() {
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

impl FromIterator<Dentry> for Dtab {
    fn from_iter<I: IntoIterator<Item = Dentry>>(iter: I) -> Self {
        Dtab::new(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dtab(s: &str) -> Dtab {
        s.parse().unwrap()
    }
    fn path(s: &str) -> Path {
        s.parse().unwrap()
    }
    fn lookup(d: &str, p: &str) -> String {
        dtab(d).lookup(&path(p)).to_string()
    }

    #[test]
    fn no_match_is_neg_one_is_as_is_several_alt_last_first() {
        assert_eq!(lookup("/a=>/b", "/c"), "~");
        assert_eq!(lookup("", "/c"), "~");
        assert_eq!(lookup("/a=>/b | /c", "/a/x"), "/b/x | /c/x");
        assert_eq!(lookup("/a=>~", "/a"), "~");
        assert_eq!(
            lookup("/foo=>/bah | /beh | /$/fail; /foo=>/bar", "/foo/humbug"),
            "/bar/humbug | (/bah/humbug | /beh/humbug | /$/fail/humbug)"
        );
        // Two `~` dentries give Alt(~, ~), not `~` (spec §6.1).
        assert_eq!(
            dtab("/a=>~;/a=>~").lookup(&path("/a")),
            NameTree::Alt(vec![NameTree::Neg, NameTree::Neg])
        );
    }

    #[test]
    fn prefixes_match_element_wise_and_wildcards_are_consumed() {
        assert_eq!(lookup("/a/*/c => /d", "/a/b/c/e/f"), "/d/e/f");
        assert_eq!(lookup("/foo=>/x", "/foobar"), "~");
        assert_eq!(lookup("/foo/bar=>/x", "/foo"), "~");
        assert_eq!(lookup("/=>/x", "/"), "/x");
        assert_eq!(lookup("/=>/x", "/a/b"), "/x/a/b");
        assert_eq!(lookup("/*=>/x", "/"), "~");
        assert_eq!(lookup("/*=>!", "/a"), "!");
        // Weights and structure survive the rewrite.
        assert_eq!(lookup("/s => 3 * /a & /b", "/s/t"), "3.00*/a/t & /b/t");
    }

    #[test]
    fn index_merges_literal_and_wildcard_dentries_in_order() {
        let d = dtab("/*=>/w1; /a=>/l1; /=>/e; /b=>/other; /a/b=>/l2; /*/b=>/w2");
        assert_eq!(
            d.lookup(&path("/a/b")).to_string(),
            "/w2 | /l2 | /e/a/b | /l1/b | /w1/b"
        );
        let order: Vec<String> = d.matches(&path("/b")).map(|(d, _)| d.to_string()).collect();
        assert_eq!(order, ["/b=>/other", "/=>/e", "/*=>/w1"]);
    }

    #[test]
    fn concat_puts_the_other_dtab_last() {
        let a = dtab("/a=>/b");
        let b = dtab("/a=>/c");
        assert_eq!(a.concat(&b).to_string(), "/a=>/b;/a=>/c");
        assert_eq!(a.concat(&b).lookup(&path("/a")).to_string(), "/c | /b");
        assert_eq!(a.concat(&Dtab::empty()), a);
        assert_eq!(Dtab::empty().concat(&a), a);
    }

    #[test]
    fn show_joins_with_semicolons() {
        assert_eq!(Dtab::empty().to_string(), "");
        assert_eq!(
            dtab("/a => /b ;\n /c/* => 2 * /d & /e;").to_string(),
            "/a=>/b;/c/*=>2.00*/d & /e"
        );
    }
}
