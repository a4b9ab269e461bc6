//! Dtabs: ordered lists of dentries, and Finagle's one-step `lookup`.
//!
//! Finagle's `Dtab.lookup` scans every dentry, last to first. A base dtab of
//! a thousand dentries, most of them under `/svc`, is looked up on every
//! binding, so the dentries are indexed by the literal elements their
//! prefixes start with, in a trie: a lookup walks the path's labels down the
//! trie and only examines the dentries on that walk (those whose literal
//! start equals the path's, plus those with a `*` after such a start). The
//! result is exactly the scan's: same dentries, same order.

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
/// The empty dtab (every request's own, when it carries none) holds
/// nothing: cloning and dropping it touch no shared count.
#[derive(Clone, Default)]
pub struct Dtab {
    inner: Option<Arc<Inner>>,
}

/// What the empty dtab reads as.
static EMPTY: std::sync::LazyLock<Inner> = std::sync::LazyLock::new(Inner::default);

#[derive(Default)]
struct Inner {
    dentries: Vec<Dentry>,
    index: Node,
}

/// A trie node for the literal path leading to it.
#[derive(Default)]
struct Node {
    /// Dentries whose prefix is exactly the literal path to this node (they
    /// match every path below it); ascending.
    ends: Ids,
    /// Dentries whose prefix is the literal path to this node followed by a
    /// `*` and more (they must be checked in full); ascending.
    wild: Ids,
    /// The next literal element. Hashed with seeded foldhash: SipHash was a
    /// tenth of parsing a large dtab and most of a lookup's hashing.
    children: HashMap<Label, Node, foldhash::quality::RandomState>,
}

/// Dentry positions at a trie node, ascending. Most nodes hold one, kept
/// inline: a large dtab's index then costs an allocation per shared prefix,
/// not one per dentry.
#[derive(Default)]
enum Ids {
    #[default]
    None,
    One(u32),
    Many(Vec<u32>),
}

impl Ids {
    fn push(&mut self, i: u32) {
        *self = match std::mem::take(self) {
            Ids::None => Ids::One(i),
            Ids::One(a) => Ids::Many(vec![a, i]),
            Ids::Many(mut v) => {
                v.push(i);
                Ids::Many(v)
            }
        };
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::None => &[],
            Ids::One(a) => std::slice::from_ref(a),
            Ids::Many(v) => v,
        }
    }
}

impl Node {
    fn insert(&mut self, i: u32, elems: &[PrefixElem]) {
        let mut node = self;
        for e in elems {
            match e {
                PrefixElem::Label(l) => node = node.children.entry(l.clone()).or_default(),
                PrefixElem::Any => {
                    node.wild.push(i);
                    return;
                }
            }
        }
        node.ends.push(i);
    }

    /// Positions of the dentries that may match `path`, last first.
    fn candidates(&self, path: &Path) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let mut node = self;
        out.extend_from_slice(node.ends.as_slice());
        out.extend_from_slice(node.wild.as_slice());
        for l in path.elems() {
            match node.children.get(l) {
                Some(n) => node = n,
                None => break,
            }
            out.extend_from_slice(node.ends.as_slice());
            out.extend_from_slice(node.wild.as_slice());
        }
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }
}

impl PartialEq for Dtab {
    fn eq(&self, other: &Self) -> bool {
        self.inner().dentries == other.inner().dentries
    }
}

impl Dtab {
    /// The empty dtab.
    pub fn empty() -> Dtab {
        Dtab::default()
    }

    fn inner(&self) -> &Inner {
        self.inner.as_deref().unwrap_or(&EMPTY)
    }

    /// A dtab from dentries, in order (builds the lookup index).
    pub fn new(dentries: Vec<Dentry>) -> Dtab {
        if dentries.is_empty() {
            return Dtab::empty();
        }
        let mut index = Node::default();
        for (i, d) in dentries.iter().enumerate() {
            // More than 4 billion dentries cannot be held in memory anyway.
            index.insert(u32::try_from(i).unwrap_or(u32::MAX), d.prefix.elems());
        }
        Dtab {
            inner: Some(Arc::new(Inner { dentries, index })),
        }
    }

    /// The dentries, in order.
    pub fn dentries(&self) -> &[Dentry] {
        &self.inner().dentries
    }

    /// Number of dentries.
    pub fn len(&self) -> usize {
        self.inner().dentries.len()
    }

    /// Whether there are no dentries.
    pub fn is_empty(&self) -> bool {
        self.inner().dentries.is_empty()
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
        let dentries = &self.inner().dentries;
        self.inner()
            .index
            .candidates(path)
            .into_iter()
            .filter_map(move |i| dentries.get(i as usize))
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
        let d = dtab(
            "/a/*/c=>/1; /a/b=>/2; /a=>/3; /a/b/*=>/4; /=>/5; /a/b/c=>/6; /b=>/7; /a/b/c/d=>/8",
        );
        assert_eq!(
            d.lookup(&path("/a/b/c")).to_string(),
            "/6 | /5/a/b/c | /4 | /3/b/c | /2/c | /1"
        );
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
