//! The delegation trace: how a path was rewritten, step by step, for people
//! debugging a dtab (`switchyard dtab explain`, the admin `/delegator.json`).
//!
//! This is Linkerd's `DelegateTree` (spec §9). It differs from [`bind`] in
//! two ways, both so that the trace shows everything: every Alt branch is
//! explored, not just the first that binds, and errors become
//! [`DelegateTree::Exception`] nodes instead of aborting.
//!
//! [`bind`]: super::bind

use std::fmt::{self, Write as _};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::bind::{MAX_DEPTH, MAX_LOOKUPS, Name, NamerAnswer, Namers};
use super::dentry::Dentry;
use super::path::Path;
use super::table::Dtab;
use super::tree::{DEFAULT_WEIGHT, NameTree, fmt_weight};

/// One node of a delegation trace. `path` is the path at that node and
/// `dentry` the dentry that produced it (`None`: Linkerd's `Dentry.nop`, the
/// root or a namer's answer).
#[derive(Clone, Debug, PartialEq)]
pub enum DelegateTree<B> {
    /// `path` was rewritten by exactly one dentry into `child`.
    Delegate {
        /// The path rewritten.
        path: Path,
        /// The dentry that produced `path`.
        dentry: Option<Dentry>,
        /// What the rewrite led to.
        child: Box<DelegateTree<B>>,
    },
    /// Several alternatives (several matching dentries, or a `|` tree); all
    /// are shown, in order.
    Alt {
        /// The path rewritten.
        path: Path,
        /// The dentry that produced `path`.
        dentry: Option<Dentry>,
        /// The alternatives, first preferred.
        children: Vec<DelegateTree<B>>,
    },
    /// A weighted union (`&`).
    Union {
        /// The path rewritten.
        path: Path,
        /// The dentry that produced `path`.
        dentry: Option<Dentry>,
        /// The members with their weights.
        children: Vec<(f64, DelegateTree<B>)>,
    },
    /// Bound by a namer.
    Leaf {
        /// The path that was bound.
        path: Path,
        /// The dentry that produced `path`.
        dentry: Option<Dentry>,
        /// The bound name.
        bound: B,
    },
    /// No dentry and no namer knows `path` (an empty path: a dentry's `~`).
    Neg {
        /// The path, empty when a dentry said `~`.
        path: Path,
        /// The dentry that produced it.
        dentry: Option<Dentry>,
    },
    /// `!` (a dentry's `!` or `/$/fail`).
    Fail {
        /// The path.
        path: Path,
        /// The dentry that produced it.
        dentry: Option<Dentry>,
    },
    /// `$` (a dentry's `$` or `/$/nil`).
    Empty {
        /// The path.
        path: Path,
        /// The dentry that produced it.
        dentry: Option<Dentry>,
    },
    /// Binding failed here (a namer error, too deep a delegation).
    Exception {
        /// The path.
        path: Path,
        /// The dentry that produced it.
        dentry: Option<Dentry>,
        /// What went wrong.
        message: String,
    },
    /// A Linkerd transformer (e.g. `io.l5d.port`) rewrote the bound name.
    Transformation {
        /// The path.
        path: Path,
        /// The transformer's name.
        name: String,
        /// The name after the transformation.
        bound: B,
        /// The tree before the transformation.
        child: Box<DelegateTree<B>>,
    },
}

/// How deep a delegation may recurse, counting lookups and Alt/Union
/// nesting. Lower than the binder's limit because a trace keeps every
/// branch and each level costs more stack; the parser already stops near 390
/// levels per dentry, so only dtabs built to nest across rewrites reach it.
pub const DELEGATE_MAX_NESTING: usize = 400;

/// Linkerd's message when a delegation goes deeper than [`MAX_DEPTH`].
pub const DELEGATE_MAX_DEPTH_MESSAGE: &str = "Max recursion level reached.";

/// Why a delegation trace could not be produced at all.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DelegateError {
    /// Some namer has not answered yet; ask again when it has.
    #[error("binding is pending")]
    Pending,
    /// The delegation failed outside any Alt or Union that could hold the
    /// error (too deep, too many lookups).
    #[error("{0}")]
    Failed(String),
}

/// The delegation trace of `path` through `dtab` and `namers`, simplified.
/// A failure that no Alt/Union captures (a cycle, say) becomes a single
/// Exception node at `path`; pending namers too ("binding is pending").
pub fn delegate<B: Clone>(
    dtab: &Dtab,
    path: &Path,
    namers: &mut impl Namers<B>,
) -> DelegateTree<B> {
    try_delegate(dtab, path, namers).unwrap_or_else(|e| DelegateTree::Exception {
        path: path.clone(),
        dentry: None,
        message: e.to_string(),
    })
}

/// [`delegate`], with "pending" and top-level failures kept apart, for a
/// caller that waits for namers to answer.
pub fn try_delegate<B: Clone>(
    dtab: &Dtab,
    path: &Path,
    namers: &mut impl Namers<B>,
) -> Result<DelegateTree<B>, DelegateError> {
    let mut d = Delegator {
        dtab,
        namers,
        lookups: 0,
        nesting: 0,
    };
    let root: Node<B> = DelegateTree::Leaf {
        path: Path::empty(),
        dentry: None,
        bound: Name::Path(path.clone()),
    };
    Ok(d.bind(root, 0)?.simplified())
}

/// A node under construction: leaves may still be paths.
type Node<B> = DelegateTree<Name<B>>;

struct Delegator<'a, N> {
    dtab: &'a Dtab,
    namers: &'a mut N,
    lookups: usize,
    /// Current recursion depth (lookups and nesting), see
    /// [`DELEGATE_MAX_NESTING`].
    nesting: usize,
}

impl<N> Delegator<'_, N> {
    /// One lookup: the matching dentries (last first) as subtrees, or, with
    /// none, the namers' answer. Namer errors become Exception nodes here.
    fn lookup<B: Clone>(
        &mut self,
        dentry: Option<Dentry>,
        path: &Path,
    ) -> Result<Node<B>, DelegateError>
    where
        N: Namers<B>,
    {
        let mut matches: Vec<Node<B>> = self
            .dtab
            .matches(path)
            .map(|(d, t)| {
                from_name_tree(
                    path,
                    Some(d.clone()),
                    &t.map(&mut |p: &Path| Name::Path(p.clone())),
                )
            })
            .collect();
        Ok(match matches.len() {
            0 => match self.namers.lookup(path) {
                NamerAnswer::Tree(NameTree::Neg) => DelegateTree::Neg {
                    path: path.clone(),
                    dentry,
                },
                NamerAnswer::Tree(t) => from_name_tree(path, dentry, &t),
                NamerAnswer::Pending => return Err(DelegateError::Pending),
                NamerAnswer::Error(message) => DelegateTree::Exception {
                    path: path.clone(),
                    dentry,
                    message,
                },
            },
            1 => DelegateTree::Delegate {
                path: path.clone(),
                dentry,
                child: Box::new(matches.pop().unwrap_or(DelegateTree::Neg {
                    path: path.clone(),
                    dentry: None,
                })),
            },
            _ => DelegateTree::Alt {
                path: path.clone(),
                dentry,
                children: matches,
            },
        })
    }

    // Binding recurses once per lookup (up to MAX_DEPTH) and once per level
    // of Alt/Union nesting, so `bind` only dispatches on the kind and each
    // kind is handled in its own function: small stack frames, even in debug
    // builds on 2 MiB threads.
    fn bind<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        if depth > MAX_DEPTH {
            return Err(DelegateError::Failed(DELEGATE_MAX_DEPTH_MESSAGE.into()));
        }
        if self.nesting >= DELEGATE_MAX_NESTING {
            return Err(DelegateError::Failed(format!(
                "Name trees nested more than {DELEGATE_MAX_NESTING} levels deep"
            )));
        }
        self.nesting += 1;
        let r = match &tree {
            DelegateTree::Leaf { .. } => self.bind_leaf(tree, depth),
            DelegateTree::Delegate { .. } => self.bind_delegate(tree, depth),
            DelegateTree::Alt { .. } => self.bind_alt(tree, depth),
            DelegateTree::Union { .. } => self.bind_union(tree, depth),
            _ => self.bind_other(tree, depth),
        };
        self.nesting -= 1;
        r
    }

    #[inline(never)]
    fn bind_other<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        Ok(match tree {
            DelegateTree::Exception {
                path,
                dentry,
                message,
            } => DelegateTree::Exception {
                path,
                dentry,
                message,
            },
            DelegateTree::Empty { path, dentry } => DelegateTree::Empty { path, dentry },
            DelegateTree::Fail { path, dentry } => DelegateTree::Fail { path, dentry },
            DelegateTree::Neg { path, dentry } => DelegateTree::Neg { path, dentry },
            // Never built during construction; kept for completeness.
            DelegateTree::Transformation {
                path,
                name,
                bound: Name::Bound(bound),
                child,
            } => DelegateTree::Transformation {
                path,
                name,
                bound,
                child: Box::new(self.bind(*child, depth)?),
            },
            DelegateTree::Transformation { path, name, .. } => DelegateTree::Exception {
                path,
                dentry: None,
                message: format!("transformation {name} of an unbound name"),
            },
            other @ (DelegateTree::Leaf { .. }
            | DelegateTree::Delegate { .. }
            | DelegateTree::Alt { .. }
            | DelegateTree::Union { .. }) => self.bind(other, depth)?,
        })
    }

    #[inline(never)]
    fn bind_leaf<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        let DelegateTree::Leaf {
            path,
            dentry,
            bound,
        } = tree
        else {
            return self.bind_other(tree, depth);
        };
        match bound {
            Name::Bound(bound) => Ok(DelegateTree::Leaf {
                path,
                dentry,
                bound,
            }),
            Name::Path(p) => {
                self.lookups += 1;
                if self.lookups > MAX_LOOKUPS {
                    return Err(DelegateError::Failed(format!(
                        "Delegation needed more than {MAX_LOOKUPS} lookups"
                    )));
                }
                let next = self.lookup(dentry, &p)?;
                self.bind(next, depth + 1)
            }
        }
    }

    #[inline(never)]
    fn bind_delegate<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        let DelegateTree::Delegate {
            path,
            dentry,
            child,
        } = tree
        else {
            return self.bind_other(tree, depth);
        };
        let child = Box::new(self.bind(*child, depth)?);
        Ok(DelegateTree::Delegate {
            path,
            dentry,
            child,
        })
    }

    /// A one-child node binds as a Delegate of its child; none is `~`.
    fn bind_single<B: Clone>(
        &mut self,
        path: Path,
        dentry: Option<Dentry>,
        child: Option<Node<B>>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        match child {
            None => Ok(DelegateTree::Neg { path, dentry }),
            Some(child) => {
                let child = Box::new(self.bind(child, depth)?);
                Ok(DelegateTree::Delegate {
                    path,
                    dentry,
                    child,
                })
            }
        }
    }

    /// A failing Alt/Union branch becomes an Exception at the parent's path
    /// and dentry, so the other branches still show; pending stays pending.
    fn bind_branch<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
        path: &Path,
        dentry: &Option<Dentry>,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        match self.bind(tree, depth) {
            Err(DelegateError::Failed(message)) => Ok(DelegateTree::Exception {
                path: path.clone(),
                dentry: dentry.clone(),
                message,
            }),
            other => other,
        }
    }

    #[inline(never)]
    fn bind_alt<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        let DelegateTree::Alt {
            path,
            dentry,
            mut children,
        } = tree
        else {
            return self.bind_other(tree, depth);
        };
        if children.len() <= 1 {
            return self.bind_single(path, dentry, children.pop(), depth);
        }
        let mut out = Vec::with_capacity(children.len());
        for c in children {
            out.push(self.bind_branch(c, depth, &path, &dentry)?);
        }
        Ok(DelegateTree::Alt {
            path,
            dentry,
            children: out,
        })
    }

    #[inline(never)]
    fn bind_union<B: Clone>(
        &mut self,
        tree: Node<B>,
        depth: usize,
    ) -> Result<DelegateTree<B>, DelegateError>
    where
        N: Namers<B>,
    {
        let DelegateTree::Union {
            path,
            dentry,
            mut children,
        } = tree
        else {
            return self.bind_other(tree, depth);
        };
        if children.len() <= 1 {
            let one = children.pop().map(|(_, c)| c);
            return self.bind_single(path, dentry, one, depth);
        }
        let mut out = Vec::with_capacity(children.len());
        for (w, c) in children {
            out.push((w, self.bind_branch(c, depth, &path, &dentry)?));
        }
        Ok(DelegateTree::Union {
            path,
            dentry,
            children: out,
        })
    }
}

/// A name tree as trace nodes at `path`, all carrying `dentry`. A `~` gets
/// the empty path (shown `~`), as Linkerd's `fromNameTree` does.
fn from_name_tree<T: Clone>(
    path: &Path,
    dentry: Option<Dentry>,
    tree: &NameTree<T>,
) -> DelegateTree<T> {
    match tree {
        NameTree::Empty => DelegateTree::Empty {
            path: path.clone(),
            dentry,
        },
        NameTree::Fail => DelegateTree::Fail {
            path: path.clone(),
            dentry,
        },
        NameTree::Neg => DelegateTree::Neg {
            path: Path::empty(),
            dentry,
        },
        NameTree::Leaf(v) => DelegateTree::Leaf {
            path: path.clone(),
            dentry,
            bound: v.clone(),
        },
        NameTree::Alt(ts) => DelegateTree::Alt {
            path: path.clone(),
            children: ts
                .iter()
                .map(|t| from_name_tree(path, dentry.clone(), t))
                .collect(),
            dentry,
        },
        NameTree::Union(ws) => DelegateTree::Union {
            path: path.clone(),
            children: ws
                .iter()
                .map(|w| (w.weight, from_name_tree(path, dentry.clone(), &w.tree)))
                .collect(),
            dentry,
        },
    }
}

impl<B> DelegateTree<B> {
    /// The path at this node.
    pub fn path(&self) -> &Path {
        match self {
            DelegateTree::Delegate { path, .. }
            | DelegateTree::Alt { path, .. }
            | DelegateTree::Union { path, .. }
            | DelegateTree::Leaf { path, .. }
            | DelegateTree::Neg { path, .. }
            | DelegateTree::Fail { path, .. }
            | DelegateTree::Empty { path, .. }
            | DelegateTree::Exception { path, .. }
            | DelegateTree::Transformation { path, .. } => path,
        }
    }

    /// The dentry that produced this node (`None` for the root, namers'
    /// answers and transformations).
    pub fn dentry(&self) -> Option<&Dentry> {
        match self {
            DelegateTree::Delegate { dentry, .. }
            | DelegateTree::Alt { dentry, .. }
            | DelegateTree::Union { dentry, .. }
            | DelegateTree::Leaf { dentry, .. }
            | DelegateTree::Neg { dentry, .. }
            | DelegateTree::Fail { dentry, .. }
            | DelegateTree::Empty { dentry, .. }
            | DelegateTree::Exception { dentry, .. } => dentry.as_ref(),
            DelegateTree::Transformation { .. } => None,
        }
    }

    /// The node's kind as JSON names it (`delegate`, `alt`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            DelegateTree::Delegate { .. } => "delegate",
            DelegateTree::Alt { .. } => "alt",
            DelegateTree::Union { .. } => "union",
            DelegateTree::Leaf { .. } => "leaf",
            DelegateTree::Neg { .. } => "neg",
            DelegateTree::Fail { .. } => "fail",
            DelegateTree::Empty { .. } => "empty",
            DelegateTree::Exception { .. } => "exception",
            DelegateTree::Transformation { .. } => "transformation",
        }
    }

    /// This node with another dentry (transformations keep theirs: none).
    fn with_dentry(self, d: Option<Dentry>) -> DelegateTree<B> {
        match self {
            DelegateTree::Delegate { path, child, .. } => DelegateTree::Delegate {
                path,
                dentry: d,
                child,
            },
            DelegateTree::Alt { path, children, .. } => DelegateTree::Alt {
                path,
                dentry: d,
                children,
            },
            DelegateTree::Union { path, children, .. } => DelegateTree::Union {
                path,
                dentry: d,
                children,
            },
            DelegateTree::Leaf { path, bound, .. } => DelegateTree::Leaf {
                path,
                dentry: d,
                bound,
            },
            DelegateTree::Neg { path, .. } => DelegateTree::Neg { path, dentry: d },
            DelegateTree::Fail { path, .. } => DelegateTree::Fail { path, dentry: d },
            DelegateTree::Empty { path, .. } => DelegateTree::Empty { path, dentry: d },
            DelegateTree::Exception { path, message, .. } => DelegateTree::Exception {
                path,
                dentry: d,
                message,
            },
            t @ DelegateTree::Transformation { .. } => t,
        }
    }

    /// Linkerd's `DelegateTree.simplified` (spec §9 step 4): a Delegate whose
    /// child sits at the same path (and is not `~`, `!`, `$`) is replaced by
    /// the child, which takes the Delegate's dentry; an Alt child at its
    /// parent Alt's path is flattened into it; one-child Alt/Union become a
    /// Delegate; empty ones become `~`.
    pub fn simplified(self) -> DelegateTree<B> {
        // Dispatch only: each kind has its own small stack frame, since
        // this recurses once per level of nesting.
        match &self {
            DelegateTree::Delegate { .. } => self.simplify_delegate(),
            DelegateTree::Alt { .. } => self.simplify_alt(),
            DelegateTree::Union { .. } => self.simplify_union(),
            _ => self,
        }
    }

    #[inline(never)]
    fn simplify_delegate(self) -> DelegateTree<B> {
        let DelegateTree::Delegate {
            path,
            dentry,
            child,
        } = self
        else {
            return self;
        };
        let s = child.simplified();
        let collapse = match &s {
            DelegateTree::Neg { .. } | DelegateTree::Fail { .. } | DelegateTree::Empty { .. } => {
                false
            }
            other => other.path() == &path,
        };
        if collapse {
            s.with_dentry(dentry)
        } else {
            DelegateTree::Delegate {
                path,
                dentry,
                child: Box::new(s),
            }
        }
    }

    /// One child: a Delegate of it; none: `~`.
    fn simplify_single(
        path: Path,
        dentry: Option<Dentry>,
        child: Option<DelegateTree<B>>,
    ) -> DelegateTree<B> {
        match child {
            Some(child) => DelegateTree::Delegate {
                path,
                dentry,
                child: Box::new(child),
            }
            .simplified(),
            None => DelegateTree::Neg { path, dentry },
        }
    }

    #[inline(never)]
    fn simplify_alt(self) -> DelegateTree<B> {
        let DelegateTree::Alt {
            path,
            dentry,
            mut children,
        } = self
        else {
            return self;
        };
        if children.len() <= 1 {
            return Self::simplify_single(path, dentry, children.pop());
        }
        let mut out = Vec::with_capacity(children.len());
        for c in children {
            match c.simplified() {
                DelegateTree::Alt {
                    path: p,
                    children: cs,
                    ..
                } if p == path => out.extend(cs),
                other => out.push(other),
            }
        }
        DelegateTree::Alt {
            path,
            dentry,
            children: out,
        }
    }

    #[inline(never)]
    fn simplify_union(self) -> DelegateTree<B> {
        let DelegateTree::Union {
            path,
            dentry,
            mut children,
        } = self
        else {
            return self;
        };
        if children.len() <= 1 {
            return Self::simplify_single(path, dentry, children.pop().map(|(_, c)| c));
        }
        let mut out = Vec::with_capacity(children.len());
        for (w, c) in children {
            out.push((w, c.simplified()));
        }
        DelegateTree::Union {
            path,
            dentry,
            children: out,
        }
    }

    /// The path as the JSON and the renderer show it: `~` for a Neg with no
    /// path, `!` for a Fail not at a `/$/fail` path (Linkerd's rules).
    pub fn shown_path(&self) -> String {
        match self {
            DelegateTree::Neg { path, .. } if path.is_empty() => "~".into(),
            DelegateTree::Fail { path, .. } => {
                let fail = Path::from_strs(&["$", "fail"]).unwrap_or_default();
                if path.starts_with(&fail) {
                    path.to_string()
                } else {
                    "!".into()
                }
            }
            other => other.path().to_string(),
        }
    }
}

// === JSON (Linkerd's JsonDelegateTree) ===

/// What the trace's JSON says about a bound name (Linkerd's `Bound`:
/// `{"addr": ..., "id": ..., "path": ...}`).
pub trait BoundJson {
    /// The client id (`/$/inet/127.0.0.1/8080`).
    fn id(&self) -> &Path;
    /// The residual path.
    fn residual(&self) -> &Path;
    /// The current address set.
    fn addr_json(&self) -> AddrJson;
}

/// A bound name's address as the trace shows it (Linkerd's `Addr` JSON:
/// `{"type":"bound","addrs":[{"ip":..,"port":..,"meta":{}}],"meta":{}}`,
/// `{"type":"failed","cause":..}`, `{"type":"neg"}`, `{"type":"pending"}`).
#[derive(Clone, Debug, PartialEq)]
pub enum AddrJson {
    /// Not resolved yet.
    Pending,
    /// Resolved to nothing that exists.
    Neg,
    /// Resolution failed.
    Failed(String),
    /// These endpoints.
    Bound(Vec<AddressJson>),
}

/// One endpoint of [`AddrJson::Bound`].
#[derive(Clone, Debug, PartialEq)]
pub struct AddressJson {
    /// The IP address, as text.
    pub ip: String,
    /// The port.
    pub port: u16,
    /// Endpoint metadata (`{}` unless a namer adds some).
    pub meta: serde_json::Map<String, serde_json::Value>,
}

impl Serialize for AddressJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("ip", &self.ip)?;
        m.serialize_entry("port", &self.port)?;
        m.serialize_entry("meta", &self.meta)?;
        m.end()
    }
}

impl Serialize for AddrJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            AddrJson::Pending => m.serialize_entry("type", "pending")?,
            AddrJson::Neg => m.serialize_entry("type", "neg")?,
            AddrJson::Failed(cause) => {
                m.serialize_entry("type", "failed")?;
                m.serialize_entry("cause", cause)?;
            }
            AddrJson::Bound(addrs) => {
                m.serialize_entry("type", "bound")?;
                m.serialize_entry("addrs", addrs)?;
                m.serialize_entry("meta", &serde_json::Map::new())?;
            }
        }
        m.end()
    }
}

impl BoundJson for super::system::SystemBound {
    fn id(&self) -> &Path {
        &self.id
    }

    fn residual(&self) -> &Path {
        &self.residual
    }

    /// IP literals are bound; host names would need DNS, which the pure
    /// binder does not do, so they show as pending.
    fn addr_json(&self) -> AddrJson {
        match self.socket_addr() {
            Some(sa) => AddrJson::Bound(vec![AddressJson {
                ip: sa.ip().to_string(),
                port: sa.port(),
                meta: serde_json::Map::new(),
            }]),
            None => AddrJson::Pending,
        }
    }
}

struct JsonDentry<'a>(&'a Dentry);

impl Serialize for JsonDentry<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("prefix", &self.0.prefix.to_string())?;
        m.serialize_entry("dst", &self.0.dst.to_string())?;
        m.end()
    }
}

struct JsonBound<'a, B>(&'a B);

impl<B: BoundJson> Serialize for JsonBound<'_, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("addr", &self.0.addr_json())?;
        m.serialize_entry("id", self.0.id())?;
        m.serialize_entry("path", self.0.residual())?;
        m.end()
    }
}

struct JsonUnion<'a, B>(&'a [(f64, DelegateTree<B>)]);

impl<B: BoundJson> Serialize for JsonUnion<'_, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (w, t) in self.0 {
            seq.serialize_element(&JsonWeighted(*w, t))?;
        }
        seq.end()
    }
}

struct JsonWeighted<'a, B>(f64, &'a DelegateTree<B>);

impl<B: BoundJson> Serialize for JsonWeighted<'_, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("weight", &self.0)?;
        m.serialize_entry("tree", self.1)?;
        m.end()
    }
}

impl<B: BoundJson> Serialize for DelegateTree<B> {
    /// Linkerd's `JsonDelegateTree`: `type`, `path`, `dentry` (absent for
    /// none), then `delegate` / `alt` / `union` / `bound` / `message`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.kind())?;
        m.serialize_entry("path", &self.shown_path())?;
        if let DelegateTree::Transformation {
            name, bound, child, ..
        } = self
        {
            m.serialize_entry("name", name)?;
            m.serialize_entry("bound", &JsonBound(bound))?;
            m.serialize_entry("tree", child.as_ref())?;
            return m.end();
        }
        if let Some(d) = self.dentry() {
            m.serialize_entry("dentry", &JsonDentry(d))?;
        }
        match self {
            DelegateTree::Delegate { child, .. } => {
                m.serialize_entry("delegate", child.as_ref())?
            }
            DelegateTree::Alt { children, .. } => m.serialize_entry("alt", children)?,
            DelegateTree::Union { children, .. } => {
                m.serialize_entry("union", &JsonUnion(children))?
            }
            DelegateTree::Leaf { bound, .. } => m.serialize_entry("bound", &JsonBound(bound))?,
            DelegateTree::Exception { message, .. } => m.serialize_entry("message", message)?,
            _ => {}
        }
        m.end()
    }
}

// === human rendering ===

impl<B> DelegateTree<B> {
    /// The first step, in trace order, where delegation went nowhere: a `~`,
    /// `!`, `$` or an error. This is what a person debugging "no route"
    /// wants to see first.
    pub fn first_failure(&self) -> Option<&DelegateTree<B>> {
        match self {
            DelegateTree::Neg { .. }
            | DelegateTree::Fail { .. }
            | DelegateTree::Empty { .. }
            | DelegateTree::Exception { .. } => Some(self),
            DelegateTree::Delegate { child, .. } | DelegateTree::Transformation { child, .. } => {
                child.first_failure()
            }
            DelegateTree::Alt { children, .. } => children.iter().find_map(|c| c.first_failure()),
            DelegateTree::Union { children, .. } => {
                children.iter().find_map(|(_, c)| c.first_failure())
            }
            DelegateTree::Leaf { .. } => None,
        }
    }

    /// One line for this node alone: `kind path [prefix=>dst] "message"`.
    pub fn step(&self) -> String {
        let mut s = format!("{} {}", self.kind(), self.shown_path());
        if let Some(d) = self.dentry() {
            let _ = write!(s, " [{d}]");
        }
        if let DelegateTree::Exception { message, .. } = self {
            let _ = write!(s, " {message:?}");
        }
        s
    }
}

impl<B: BoundJson> DelegateTree<B> {
    /// An indented tree, one node per line: `kind path  [prefix=>dst]`,
    /// bound leaves followed by `bound id=<id> path=<residual>`, exceptions
    /// by their quoted message, union members prefixed by their weight.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out, 0, None);
        out
    }

    fn render_into(&self, out: &mut String, depth: usize, weight: Option<f64>) {
        for _ in 0..depth {
            out.push_str("  ");
        }
        if let Some(w) = weight
            && w != DEFAULT_WEIGHT
        {
            let _ = write!(out, "{}*", fmt_weight(w));
        }
        let _ = write!(out, "{} {}", self.kind(), self.shown_path());
        if let Some(d) = self.dentry() {
            let _ = write!(out, "  [{d}]");
        }
        match self {
            DelegateTree::Leaf { bound, .. } => {
                let _ = write!(out, "  bound id={} path={}", bound.id(), bound.residual());
            }
            DelegateTree::Exception { message, .. } => {
                let _ = write!(out, "  {message:?}");
            }
            DelegateTree::Transformation { name, bound, .. } => {
                let _ = write!(
                    out,
                    "  {name}  bound id={} path={}",
                    bound.id(),
                    bound.residual()
                );
            }
            _ => {}
        }
        out.push('\n');
        match self {
            DelegateTree::Delegate { child, .. } | DelegateTree::Transformation { child, .. } => {
                child.render_into(out, depth + 1, None)
            }
            DelegateTree::Alt { children, .. } => {
                for c in children {
                    c.render_into(out, depth + 1, None);
                }
            }
            DelegateTree::Union { children, .. } => {
                for (w, c) in children {
                    c.render_into(out, depth + 1, Some(*w));
                }
            }
            _ => {}
        }
    }
}

impl<B: BoundJson> fmt::Display for DelegateTree<B> {
    /// The [`render`](DelegateTree::render) form, without the final newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.render().trim_end_matches('\n'))
    }
}
