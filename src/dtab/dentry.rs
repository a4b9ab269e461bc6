//! Dentries: one rewrite rule `PREFIX => TREE` of a dtab.

use std::fmt;

use super::path::{Label, Path};
use super::tree::NameTree;

/// One element of a dentry prefix: a literal label or `*` (any one label).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrefixElem {
    /// `*`: matches exactly one label, whatever it is.
    Any,
    /// A literal label.
    Label(Label),
}

/// The left side of a dentry: a path whose elements may be `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Prefix(Vec<PrefixElem>);

impl Prefix {
    /// A prefix from its elements.
    pub fn new(elems: Vec<PrefixElem>) -> Prefix {
        Prefix(elems)
    }

    /// The elements.
    pub fn elems(&self) -> &[PrefixElem] {
        &self.0
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is `/`, which matches every path.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Element-wise match: `/foo` matches `/foo/bar` but not `/foobar`.
    pub fn matches(&self, path: &Path) -> bool {
        self.0.len() <= path.len()
            && self.0.iter().zip(path.elems()).all(|(p, l)| match p {
                PrefixElem::Any => true,
                PrefixElem::Label(x) => x == l,
            })
    }
}

impl From<Path> for Prefix {
    fn from(p: Path) -> Prefix {
        Prefix(p.elems().iter().cloned().map(PrefixElem::Label).collect())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for e in &self.0 {
            match e {
                PrefixElem::Any => f.write_str("/*")?,
                PrefixElem::Label(l) => write!(f, "/{l}")?,
            }
        }
        Ok(())
    }
}

/// A delegation rule: paths starting with `prefix` are rewritten to `dst`
/// with the rest of the path (the residual) appended to each leaf.
#[derive(Clone, Debug, PartialEq)]
pub struct Dentry {
    /// Which paths this rule applies to.
    pub prefix: Prefix,
    /// What they become.
    pub dst: NameTree<Path>,
}

impl Dentry {
    /// A dentry.
    pub fn new(prefix: Prefix, dst: NameTree<Path>) -> Dentry {
        Dentry { prefix, dst }
    }
}

impl fmt::Display for Dentry {
    /// Finagle's show: `prefix=>tree`, no spaces around `=>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.prefix, self.dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(s: &str) -> Prefix {
        s.parse().unwrap()
    }
    fn path(s: &str) -> Path {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_matching_is_element_wise() {
        assert!(prefix("/").matches(&path("/")));
        assert!(prefix("/").matches(&path("/a")));
        assert!(prefix("/foo").matches(&path("/foo/bar")));
        assert!(!prefix("/foo").matches(&path("/foobar")));
        assert!(!prefix("/foo/bar").matches(&path("/foo")));
        assert!(prefix("/a/*/c").matches(&path("/a/b/c/d")));
        assert!(!prefix("/a/*/c").matches(&path("/a/b")));
        assert!(!prefix("/*").matches(&path("/")));
    }

    #[test]
    fn show() {
        assert_eq!(Prefix::default().to_string(), "/");
        assert_eq!(prefix("/a/*/\\x20").to_string(), "/a/*/\\x20");
        assert_eq!(Prefix::from(path("/a/b")).to_string(), "/a/b");
        let d: Dentry = "/foo => /bar | /baz".parse().unwrap();
        assert_eq!(d.to_string(), "/foo=>/bar | /baz");
    }
}
