//! `io.l5d.fs`: service discovery from a directory, one file per service.
//!
//! `/#/io.l5d.fs/web/rest` binds to the file `rootDir/web` (id
//! `/#/io.l5d.fs/web`, residual `/rest`). Directories nest: `/a/b` is
//! `rootDir/a/b` when `a` is a directory. Each file holds lines
//! `host port` or `host port * weight`; `#` starts a comment.
//!
//! One notify watcher per namer watches the whole tree (recursively, because
//! editors save by rename and files come and go), and on any event, after a
//! short debounce, every subscribed path and file is re-checked; a file is
//! re-parsed only when its content hash changed, and watches are updated
//! only when the answer changed. A slow periodic re-check covers file
//! systems where inotify misses changes.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use super::inet::resolve_host;
use super::namer::{NameWatch, Namer, namer_prefix};
use super::{Activity, Addr, Bound};
use crate::dtab::{Label, Name, NameTree, Path};

/// Events closer together than this are handled as one.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Re-check everything this often even without events (NFS, overlay mounts).
const POLL: Duration = Duration::from_secs(10);

/// Why an fs namer could not start.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// `rootDir` is missing or not a directory.
    #[error("io.l5d.fs rootDir {path}: {message}")]
    RootDir {
        /// The configured directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The OS file watcher could not be set up.
    #[error("io.l5d.fs rootDir {path}: cannot watch: {source}")]
    Watch {
        /// The configured directory.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
}

/// The `io.l5d.fs` namer. Cloning shares the watcher and the state.
#[derive(Clone)]
pub struct FsNamer {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    id_prefix: Path,
    state: Mutex<State>,
    errors: AtomicU64,
    /// Wakes the watcher task (a new subscription needs its file read).
    /// Dropping the namer closes it, which stops the task.
    kick: mpsc::UnboundedSender<()>,
}

#[derive(Default)]
struct State {
    /// Subscribed paths (relative to the prefix) and their current tree.
    lookups: HashMap<Path, watch::Sender<Activity<NameTree<Name<Bound>>>>>,
    /// Files in use, by the path segments that name them.
    files: HashMap<Path, FileEntry>,
    /// Every service file under the root, as ids.
    names: Vec<Path>,
}

struct FileEntry {
    addr: watch::Sender<Addr>,
    /// Hash of the content last applied; `None` = not read yet, missing, or
    /// to be read again (after a resolution failure).
    hash: Option<u64>,
}

impl FsNamer {
    /// Start watching `root_dir`. `prefix` is the namer's configured prefix,
    /// `/io.l5d.fs` or `/#/io.l5d.fs` (see [`super::namer_prefix`]); bound
    /// ids are `/#/<prefix>` plus the file's path segments.
    ///
    /// Must be called inside a tokio runtime (it starts the watcher task).
    pub fn new(root_dir: impl Into<PathBuf>, prefix: Path) -> Result<FsNamer, FsError> {
        let root: PathBuf = root_dir.into();
        let id_prefix = namer_prefix(&prefix);
        match std::fs::metadata(&root) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(FsError::RootDir {
                    path: root,
                    message: "not a directory".into(),
                });
            }
            Err(e) => {
                return Err(FsError::RootDir {
                    path: root,
                    message: e.to_string(),
                });
            }
        }
        let (ev_tx, ev_rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reads (this watcher's own included) are not changes: reacting to
            // them re-reads forever.
            if let Ok(ev) = &res
                && matches!(ev.kind, notify::EventKind::Access(a)
                    if a != notify::event::AccessKind::Close(notify::event::AccessMode::Write))
            {
                return;
            }
            if let Err(e) = &res {
                tracing::warn!("io.l5d.fs watcher: {e}");
            }
            let _ = ev_tx.send(());
        })
        .map_err(|source| FsError::Watch {
            path: root.clone(),
            source,
        })?;
        watcher
            .watch(&root, notify::RecursiveMode::Recursive)
            .map_err(|source| FsError::Watch {
                path: root.clone(),
                source,
            })?;
        let (kick, kick_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            root,
            id_prefix,
            state: Mutex::new(State::default()),
            errors: AtomicU64::new(0),
            kick,
        });
        shared.lock().names = scan_names(&shared.root, &shared.id_prefix);
        tokio::spawn(run(Arc::downgrade(&shared), watcher, ev_rx, kick_rx));
        Ok(FsNamer { shared })
    }

    /// The watched directory.
    pub fn root(&self) -> &std::path::Path {
        &self.shared.root
    }

    /// How many malformed lines, unreadable files and failed host lookups
    /// have been seen (each also logged with `file:line`).
    pub fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }

    /// Every service file under the root, as bound ids (`/#/io.l5d.fs/web`),
    /// sorted; kept current by the watcher (for `/bound-names.json`).
    pub fn names(&self) -> Vec<Path> {
        self.shared.lock().names.clone()
    }
}

impl Namer for FsNamer {
    fn lookup(&self, path: &Path) -> NameWatch {
        let shared = &self.shared;
        let mut st = shared.lock();
        if let Some(tx) = st.lookups.get(path) {
            return tx.subscribe();
        }
        let located = locate(&shared.root, path);
        let tree = shared.tree_for(&mut st, path, located);
        let (tx, rx) = watch::channel(Activity::Ok(tree));
        st.lookups.insert(path.clone(), tx);
        rx
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tree for `path` given where it landed; creates (and schedules the
    /// read of) the file's entry when it is new.
    fn tree_for(
        &self,
        st: &mut State,
        path: &Path,
        located: Option<usize>,
    ) -> NameTree<Name<Bound>> {
        let Some(consumed) = located else {
            return NameTree::Neg;
        };
        let key = path.take(consumed);
        let addr = match st.files.get(&key) {
            Some(f) => f.addr.subscribe(),
            None => {
                let (tx, rx) = watch::channel(Addr::Pending);
                st.files.insert(
                    key.clone(),
                    FileEntry {
                        addr: tx,
                        hash: None,
                    },
                );
                let _ = self.kick.send(());
                rx
            }
        };
        NameTree::Leaf(Name::Bound(Bound {
            id: self.id_prefix.concat(&key),
            residual: path.drop(consumed),
            addr,
        }))
    }

    fn file_path(&self, key: &Path) -> PathBuf {
        let mut p = self.root.clone();
        for l in key.elems() {
            p.push(l.as_str().unwrap_or_default());
        }
        p
    }

    /// Bring every subscription and file up to date with the disk.
    async fn sync(&self) {
        // Subscriptions nobody holds go first, which releases their files.
        let paths: Vec<Path> = {
            let mut st = self.lock();
            st.lookups.retain(|_, tx| tx.receiver_count() > 0);
            st.files.retain(|_, f| f.addr.receiver_count() > 0);
            st.lookups.keys().cloned().collect()
        };
        let located: Vec<(Path, Option<usize>)> = paths
            .into_iter()
            .map(|p| {
                let l = locate(&self.root, &p);
                (p, l)
            })
            .collect();
        {
            let mut st = self.lock();
            for (path, loc) in located {
                let tree = self.tree_for(&mut st, &path, loc);
                if let Some(tx) = st.lookups.get(&path) {
                    let next = Activity::Ok(tree);
                    tx.send_if_modified(|cur| {
                        if same_tree(cur, &next) {
                            false
                        } else {
                            *cur = next;
                            true
                        }
                    });
                }
            }
        }
        let files: Vec<(Path, watch::Sender<Addr>, Option<u64>)> = self
            .lock()
            .files
            .iter()
            .map(|(k, f)| (k.clone(), f.addr.clone(), f.hash))
            .collect();
        for (key, tx, old_hash) in files {
            let new_hash = self.reload_file(&key, &tx, old_hash).await;
            if let Some(f) = self.lock().files.get_mut(&key) {
                f.hash = new_hash;
            }
        }
        let names = scan_names(&self.root, &self.id_prefix);
        self.lock().names = names;
    }

    /// Re-read one file; returns the hash to remember.
    async fn reload_file(
        &self,
        key: &Path,
        tx: &watch::Sender<Addr>,
        old_hash: Option<u64>,
    ) -> Option<u64> {
        let file = self.file_path(key);
        let text = match tokio::fs::read(&file).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = set_addr(tx, Addr::Neg);
                return None;
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let msg = format!("{}: {e}", file.display());
                tracing::warn!("io.l5d.fs: {msg}");
                fail_unless_bound(tx, msg);
                return None;
            }
        };
        let hash = {
            let mut h = DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        if old_hash == Some(hash) {
            return old_hash;
        }
        let text = String::from_utf8_lossy(&text);
        let lines = match parse_file(&file.display().to_string(), &text) {
            Ok(lines) => lines,
            Err(msg) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("io.l5d.fs: {msg}; keeping the last good set");
                fail_unless_bound(tx, msg);
                // No point reading it again until it changes.
                return Some(hash);
            }
        };
        let mut endpoints = Vec::new();
        for line in &lines {
            match resolve_host(&line.host, line.port, line.weight).await {
                Ok(eps) => endpoints.extend(eps),
                Err(e) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    let msg = format!("{}:{}: {e}", file.display(), line.line);
                    tracing::warn!("io.l5d.fs: {msg}; keeping the last good set");
                    fail_unless_bound(tx, msg);
                    // Try again on the next pass.
                    return None;
                }
            }
        }
        endpoints.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.weight.total_cmp(&b.weight)));
        if set_addr(tx, Addr::Bound(Arc::from(endpoints))) {
            crate::telemetry::metrics::namer_updates(&self.id_prefix).increment(1);
        }
        Some(hash)
    }
}

/// Publish `next` if it differs; whether it did.
fn set_addr(tx: &watch::Sender<Addr>, next: Addr) -> bool {
    tx.send_if_modified(|cur| {
        if *cur == next {
            false
        } else {
            *cur = next;
            true
        }
    })
}

/// A bad file keeps the last good set; with none, the name fails.
fn fail_unless_bound(tx: &watch::Sender<Addr>, msg: String) {
    if !matches!(&*tx.borrow(), Addr::Bound(_)) {
        let _ = set_addr(tx, Addr::Failed(Arc::from(msg)));
    }
}

/// Equal trees with the same Addr channels: nothing to publish.
fn same_tree(a: &Activity<NameTree<Name<Bound>>>, b: &Activity<NameTree<Name<Bound>>>) -> bool {
    if a != b {
        return false;
    }
    match (a, b) {
        (Activity::Ok(x), Activity::Ok(y)) => x.leaves().iter().zip(y.leaves()).all(|p| match p {
            (Name::Bound(l), Name::Bound(r)) => l.addr.same_channel(&r.addr),
            _ => true,
        }),
        _ => true,
    }
}

/// A label usable as one file name component (no traversal, no separators).
fn component(label: &Label) -> Option<&str> {
    let s = label.as_str()?;
    if s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return None;
    }
    Some(s)
}

/// Walk `path` down from `root` through directories until a file: how many
/// segments name that file, or `None` (negative).
fn locate(root: &std::path::Path, path: &Path) -> Option<usize> {
    let mut cur = root.to_path_buf();
    for (i, label) in path.elems().iter().enumerate() {
        cur.push(component(label)?);
        let md = std::fs::metadata(&cur).ok()?;
        if md.is_file() {
            return Some(i + 1);
        }
        if !md.is_dir() {
            return None;
        }
    }
    None
}

/// Every regular file under `root` (hidden entries skipped), as ids.
fn scan_names(root: &std::path::Path, id_prefix: &Path) -> Vec<Path> {
    fn walk(dir: &std::path::Path, at: &Path, depth: usize, out: &mut Vec<Path>) {
        // Symlinked directories may loop; real trees are shallow.
        if depth > 16 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let Ok(label) = Label::new(name.as_bytes().to_vec()) else {
                continue;
            };
            let here = at.join(label);
            let p = entry.path();
            match std::fs::metadata(&p) {
                Ok(md) if md.is_file() => out.push(here),
                Ok(md) if md.is_dir() => walk(&p, &here, depth + 1, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, id_prefix, 0, &mut out);
    out.sort();
    out
}

/// One parsed line of a service file.
#[derive(Debug, Clone, PartialEq)]
pub struct FsLine {
    /// 1-based line number, for messages.
    pub line: usize,
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Weight (1.0 unless `* weight` is given).
    pub weight: f64,
}

/// Parse a service file: `host port` or `host port * weight` per line,
/// `#` comments, blank lines ignored. The error names `file:line`.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<FsLine>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let parsed = match toks.as_slice() {
            [host, port] => port.parse::<u16>().ok().map(|p| (host, p, 1.0)),
            [host, port, "*", weight] => match (port.parse::<u16>(), weight.parse::<f64>()) {
                (Ok(p), Ok(w)) if w.is_finite() && w >= 0.0 => Some((host, p, w)),
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some((host, port, weight)) => out.push(FsLine {
                line: i + 1,
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                weight,
            }),
            None => {
                return Err(format!(
                    "{file}:{}: expected 'host port' or 'host port * weight', found '{}'",
                    i + 1,
                    raw.trim()
                ));
            }
        }
    }
    Ok(out)
}

/// The watcher task: wait for an event (or a kick, or the poll tick),
/// let the burst settle, then sync. Stops when the namer is dropped.
async fn run(
    shared: Weak<Shared>,
    watcher: notify::RecommendedWatcher,
    mut events: mpsc::UnboundedReceiver<()>,
    mut kicks: mpsc::UnboundedReceiver<()>,
) {
    let _watcher = watcher;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; `new` has just scanned.
    tick.tick().await;
    loop {
        let kicked = tokio::select! {
            biased;
            k = kicks.recv() => if k.is_none() { return } else { true },
            e = events.recv() => if e.is_none() { return } else { false },
            _ = tick.tick() => false,
        };
        // A kick is a new lookup waiting for its file (the first request to
        // a name): read now. File events come in bursts: let them settle.
        if !kicked {
            tokio::time::sleep(DEBOUNCE).await;
        }
        while events.try_recv().is_ok() {}
        while kicks.try_recv().is_ok() {}
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.sync().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let t = "# comment\n\n127.0.0.1 8080\nlocalhost 9090 * 0.5 # trailing\n";
        let lines = parse_file("f", t).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 3);
        assert_eq!(lines[1].weight, 0.5);
        assert_eq!(lines[1].host, "localhost");
    }

    #[test]
    fn rejects_bad_lines() {
        for bad in [
            "127.0.0.1",
            "h 80 *",
            "h 80 * x",
            "h 99999",
            "h 80 extra",
            "h 80 * -1",
        ] {
            let e = parse_file("dir/web", &format!("1.2.3.4 1\n{bad}\n")).unwrap_err();
            assert!(
                e.starts_with("dir/web:2: expected 'host port' or 'host port * weight'"),
                "{e}"
            );
        }
    }

    #[test]
    fn labels_cannot_escape() {
        assert!(component(&Label::new(b"..".to_vec()).unwrap()).is_none());
        assert!(component(&Label::new(b"a/b".to_vec()).unwrap()).is_none());
        assert_eq!(
            component(&Label::new(b"web".to_vec()).unwrap()),
            Some("web")
        );
    }
}
