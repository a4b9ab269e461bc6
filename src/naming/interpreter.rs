//! The live binder: Linkerd 1's `ConfiguredNamersInterpreter`.
//!
//! Rather than a reactive `Activity` library, each (local dtab, path) gets one
//! task: it runs the pure binder ([`crate::dtab::bind`]) against a snapshot
//! of every namer watch the binding touches, publishes the result, then
//! waits for any of those watches or the base dtab to change and binds
//! again — once per change, never per request. It stops when the last
//! receiver of its result is dropped. An endpoint-set (`Addr`) change needs
//! no re-bind: the bound leaf carries the `Addr` watch itself.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use tokio::sync::watch;

use super::inet::InetResolver;
use super::namer::{NameWatch, Namer, namer_prefix};
use super::{Activity, Bound};
use crate::dtab::system::{self, SystemAnswer};
use crate::dtab::{
    BindError, DelegateError, DelegateTree, Dtab, Name, NameTree, NamerAnswer, Namers, Path, bind,
    delegate, try_delegate,
};

/// What [`Interpreter::bind`] hands out.
pub type BindWatch = watch::Receiver<Activity<NameTree<Bound>>>;

type Key = (String, Path);

/// The live binder. Cloning shares the namers and the binding cache.
#[derive(Clone)]
pub struct Interpreter {
    inner: Arc<Inner>,
}

struct Inner {
    namers: Vec<(Path, Arc<dyn Namer>)>,
    base: watch::Receiver<Dtab>,
    inet: InetResolver,
    bindings: Mutex<HashMap<Key, watch::Sender<Activity<NameTree<Bound>>>>>,
}

impl Interpreter {
    /// An interpreter over configured `namers` (in config order; a prefix
    /// written `/io.l5d.fs` is addressed as `/#/io.l5d.fs`) and the router's
    /// `base` dtab, itself a watch swapped on reload.
    pub fn new(namers: Vec<(Path, Arc<dyn Namer>)>, base: watch::Receiver<Dtab>) -> Interpreter {
        Interpreter::with_inet(namers, base, InetResolver::default())
    }

    /// As [`Interpreter::new`], with a given `/$/inet` resolver (to share it
    /// between routers, or to choose its refresh period).
    pub fn with_inet(
        namers: Vec<(Path, Arc<dyn Namer>)>,
        base: watch::Receiver<Dtab>,
        inet: InetResolver,
    ) -> Interpreter {
        let namers = namers
            .into_iter()
            .map(|(p, n)| (namer_prefix(&p), n))
            .collect();
        Interpreter {
            inner: Arc::new(Inner {
                namers,
                base,
                inet,
                bindings: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The bound tree of `path` under `base ++ local`, kept current.
    ///
    /// Callers with the same (local, path) share one binding task; the first
    /// value is computed before this returns (it may be `Pending` if a namer
    /// has not answered yet). Must be called inside a tokio runtime.
    pub fn bind(&self, local: &Dtab, path: &Path) -> BindWatch {
        let key: Key = (local.to_string(), path.clone());
        let mut bindings = self.inner.lock();
        if let Some(tx) = bindings.get(&key) {
            return tx.subscribe();
        }
        let mut base = self.inner.base.clone();
        let (first, touched) = self.inner.bind_once(&mut base, local, path);
        let (tx, rx) = watch::channel(first);
        bindings.insert(key.clone(), tx.clone());
        drop(bindings);
        tokio::spawn(run(
            self.inner.clone(),
            key,
            local.clone(),
            path.clone(),
            tx,
            base,
            touched,
        ));
        rx
    }

    /// The delegation trace of `path` under `base ++ local` with the namers'
    /// current answers (Linkerd's `/delegator.json`; serialise it with
    /// serde). A namer that has not answered yet shows as an exception
    /// "binding is pending"; see [`Interpreter::delegate_ready`].
    pub fn delegate(&self, local: &Dtab, path: &Path) -> DelegateTree<Bound> {
        let dtab = self.inner.base.borrow().concat(local);
        let mut namers = Snapshot {
            inner: &self.inner,
            touched: Vec::new(),
        };
        delegate(&dtab, path, &mut namers)
    }

    /// As [`Interpreter::delegate`], but while some namer is pending, wait
    /// (at most `limit` in all) for it to answer.
    pub async fn delegate_ready(
        &self,
        local: &Dtab,
        path: &Path,
        limit: std::time::Duration,
    ) -> DelegateTree<Bound> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let dtab = self.inner.base.borrow().concat(local);
            let mut namers = Snapshot {
                inner: &self.inner,
                touched: Vec::new(),
            };
            let failed = match try_delegate(&dtab, path, &mut namers) {
                Ok(tree) => return tree,
                Err(e @ DelegateError::Failed(_)) => e,
                Err(e @ DelegateError::Pending) => {
                    let mut touched = namers.touched;
                    let waited = tokio::time::timeout_at(deadline, any_changed(&mut touched)).await;
                    if waited.is_ok() {
                        continue;
                    }
                    e
                }
            };
            return DelegateTree::Exception {
                path: path.clone(),
                dentry: None,
                message: failed.to_string(),
            };
        }
    }

    /// The base dtab in force now.
    pub fn dtab(&self) -> Dtab {
        self.inner.base.borrow().clone()
    }

    /// The configured namers' dtab prefixes (`/#/io.l5d.fs`), in order.
    pub fn namer_prefixes(&self) -> Vec<Path> {
        self.inner.namers.iter().map(|(p, _)| p.clone()).collect()
    }

    /// How many bindings are live (one task each).
    pub fn live_bindings(&self) -> usize {
        self.inner.lock().len()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, watch::Sender<Activity<NameTree<Bound>>>>> {
        self.bindings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One binding against the current snapshot; returns the result and
    /// the namer watches it depended on (marked seen).
    fn bind_once(
        &self,
        base: &mut watch::Receiver<Dtab>,
        local: &Dtab,
        path: &Path,
    ) -> (Activity<NameTree<Bound>>, Vec<NameWatch>) {
        let dtab = base.borrow_and_update().concat(local);
        let mut namers = Snapshot {
            inner: self,
            touched: Vec::new(),
        };
        let result = match bind(&dtab, path, &mut namers) {
            Ok(tree) => Activity::Ok(tree),
            Err(BindError::Pending) => Activity::Pending,
            Err(e) => Activity::Failed(Arc::from(e.to_string())),
        };
        (result, namers.touched)
    }
}

/// The namers as the pure binder sees them: configured namers by prefix
/// (first match; `Neg` falls to the next), then the system namers. Every
/// namer watch read is kept, so the task knows what to wait on.
struct Snapshot<'a> {
    inner: &'a Inner,
    touched: Vec<NameWatch>,
}

impl Namers<Bound> for Snapshot<'_> {
    fn lookup(&mut self, path: &Path) -> NamerAnswer<Bound> {
        for (prefix, namer) in &self.inner.namers {
            if !path.starts_with(prefix) {
                continue;
            }
            let mut rx = namer.lookup(&path.drop(prefix.len()));
            let now = rx.borrow_and_update().clone();
            self.touched.push(rx);
            match now {
                Activity::Pending => return NamerAnswer::Pending,
                Activity::Failed(msg) => return NamerAnswer::Error(msg.to_string()),
                Activity::Ok(NameTree::Neg) => continue,
                Activity::Ok(tree) => return NamerAnswer::Tree(tree),
            }
        }
        match system::lookup(path) {
            SystemAnswer::Inet {
                id,
                host,
                port,
                residual,
            } => NamerAnswer::Tree(NameTree::Leaf(Name::Bound(
                self.inner.inet.bound(id, &host, port, residual),
            ))),
            SystemAnswer::Tree(tree) => NamerAnswer::Tree(tree.map(&mut |p| Name::Path(p.clone()))),
            SystemAnswer::Error(msg) => NamerAnswer::Error(msg),
            SystemAnswer::NotSystem => NamerAnswer::Tree(NameTree::Neg),
        }
    }
}

/// Equal (id, residual) structure and the same `Addr` channels.
fn same(a: &Activity<NameTree<Bound>>, b: &Activity<NameTree<Bound>>) -> bool {
    if a != b {
        return false;
    }
    match (a, b) {
        (Activity::Ok(x), Activity::Ok(y)) => x
            .leaves()
            .iter()
            .zip(y.leaves())
            .all(|(l, r)| l.addr.same_channel(&r.addr)),
        _ => true,
    }
}

/// Resolves when any of `watches` changes; a watch whose sender is gone
/// can never change again and is ignored (never a busy loop).
async fn any_changed(watches: &mut [NameWatch]) {
    let mut futs: Vec<Option<Pin<Box<dyn Future<Output = bool> + Send + '_>>>> = watches
        .iter_mut()
        .map(|w| {
            Some(Box::pin(async move { w.changed().await.is_ok() })
                as Pin<Box<dyn Future<Output = bool> + Send + '_>>)
        })
        .collect();
    std::future::poll_fn(|cx| {
        for slot in futs.iter_mut() {
            if let Some(f) = slot
                && let Poll::Ready(ok) = f.as_mut().poll(cx)
            {
                if ok {
                    return Poll::Ready(());
                }
                *slot = None;
            }
        }
        Poll::Pending
    })
    .await
}

/// Resolves when the base dtab changes; never if its sender is gone.
async fn base_changed(base: &mut watch::Receiver<Dtab>) {
    if base.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn run(
    inner: Arc<Inner>,
    key: Key,
    local: Dtab,
    path: Path,
    tx: watch::Sender<Activity<NameTree<Bound>>>,
    mut base: watch::Receiver<Dtab>,
    mut touched: Vec<NameWatch>,
) {
    loop {
        tokio::select! {
            biased;
            _ = tx.closed() => {
                let mut bindings = inner.lock();
                // A caller may have subscribed since: then keep going.
                if tx.receiver_count() == 0 {
                    if bindings.get(&key).is_some_and(|t| t.same_channel(&tx)) {
                        bindings.remove(&key);
                    }
                    return;
                }
                drop(bindings);
                // Someone came back; nothing changed, but binding again is
                // cheap and keeps this loop simple.
            }
            _ = base_changed(&mut base) => {}
            _ = any_changed(&mut touched) => {}
        }
        let (next, now_touched) = inner.bind_once(&mut base, &local, &path);
        // Keep the old watches until the new ones are held, so namers see
        // continuous interest.
        let _old = std::mem::replace(&mut touched, now_touched);
        tx.send_if_modified(|cur| {
            if same(cur, &next) {
                false
            } else {
                *cur = next;
                true
            }
        });
    }
}
