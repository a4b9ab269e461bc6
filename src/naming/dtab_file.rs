//! The `io.l5d.fs` interpreter's dtab file: read once (an error is fatal),
//! then hot-reloaded.
//!
//! The watch is on the file's parent directory, not the file: editors save
//! by writing a temporary file and renaming it over the target (a watch on
//! the file dies with the old inode), and Kubernetes ConfigMaps swap a
//! `..data` symlink, so no event ever names the file itself. On any event in
//! the directory (debounced) the file is re-read through its path and
//! reloaded only if its content hash changed. A bad edit is rejected: the
//! last good dtab keeps serving, and the rejection is logged with
//! `file:line:col`, counted, and kept for the admin page.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::Watcher;
use tokio::sync::{mpsc, watch};

use crate::dtab::{Dtab, ParseError};

/// Events closer together than this are handled as one.
const DEBOUNCE: Duration = Duration::from_millis(30);
/// Re-read this often even without events (file systems inotify misses).
const POLL: Duration = Duration::from_secs(10);

/// Why the dtab file could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum DtabFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The dtab file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid dtab; every bad dentry is listed.
    #[error("{}", show_errors(.0))]
    Parse(Vec<ParseError>),
    /// The directory watcher could not be set up.
    #[error("{path}: cannot watch: {source}")]
    Watch {
        /// The directory watched.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
}

fn show_errors(errors: &[ParseError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The outcome of the last reload attempt, for the admin page.
#[derive(Clone, Debug, PartialEq)]
pub struct LastReload {
    /// When it happened.
    pub at: SystemTime,
    /// `Ok(())` if the new dtab was taken (or was unchanged), else why it
    /// was rejected (`file:line:col: expected ...`).
    pub result: Result<(), String>,
}

/// Reload counters and the last outcome.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReloadStats {
    /// New dtabs taken into service since start.
    pub reloads: u64,
    /// Edits rejected (unparseable or unreadable); the old dtab kept serving.
    pub rejections: u64,
    /// The last attempt that found changed content, if any.
    pub last: Option<LastReload>,
}

struct Stats {
    reloads: AtomicU64,
    rejections: AtomicU64,
    last: Mutex<Option<LastReload>>,
}

impl Stats {
    fn record(&self, result: Result<(), String>) {
        match &result {
            Ok(()) => self.reloads.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.rejections.fetch_add(1, Ordering::Relaxed),
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(LastReload {
            at: SystemTime::now(),
            result,
        });
    }
}

/// The running watch on a dtab file: counters, and a way to stop it.
///
/// Reloading goes on while any receiver of the dtab watch is alive; this
/// handle is not needed to keep it running.
#[derive(Clone)]
pub struct DtabFileHandle {
    path: PathBuf,
    stats: Arc<Stats>,
    tx: watch::Sender<Dtab>,
    stop: Arc<tokio::sync::Notify>,
}

impl DtabFileHandle {
    /// The watched file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Counters and the last reload outcome.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            reloads: self.stats.reloads.load(Ordering::Relaxed),
            rejections: self.stats.rejections.load(Ordering::Relaxed),
            last: self
                .stats
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// The dtab in service now.
    pub fn current(&self) -> Dtab {
        self.tx.borrow().clone()
    }

    /// Stop watching; the last dtab stays in the watch.
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

/// Load `path` (errors here are fatal and name `file:line:col`), then keep
/// the returned watch current as the file changes.
///
/// Must be called inside a tokio runtime.
pub fn watch_dtab_file(
    path: impl Into<PathBuf>,
) -> Result<(watch::Receiver<Dtab>, DtabFileHandle), DtabFileError> {
    let path: PathBuf = path.into();
    let source = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|source| DtabFileError::Io {
        path: path.clone(),
        source,
    })?;
    let dtab = parse(&source, &bytes).map_err(DtabFileError::Parse)?;
    let hash = hash_of(&bytes);

    // The parent of `dtab` is `.`; of `/dtab`, `/`.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
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
            tracing::warn!("dtab file watcher: {e}");
        }
        let _ = ev_tx.send(());
    })
    .map_err(|source| DtabFileError::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| DtabFileError::Watch {
            path: dir.clone(),
            source,
        })?;

    let (tx, rx) = watch::channel(dtab);
    let handle = DtabFileHandle {
        path: path.clone(),
        stats: Arc::new(Stats {
            reloads: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            last: Mutex::new(None),
        }),
        tx: tx.clone(),
        stop: Arc::new(tokio::sync::Notify::new()),
    };
    tokio::spawn(run(handle.clone(), watcher, ev_rx, hash));
    Ok((rx, handle))
}

fn parse(source: &str, bytes: &[u8]) -> Result<Dtab, Vec<ParseError>> {
    let text = String::from_utf8_lossy(bytes);
    Dtab::parse_all(&text).map_err(|errs| errs.into_iter().map(|e| e.with_source(source)).collect())
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

async fn run(
    handle: DtabFileHandle,
    watcher: notify::RecommendedWatcher,
    mut events: mpsc::UnboundedReceiver<()>,
    mut hash: u64,
) {
    let _watcher = watcher;
    let source = handle.path.display().to_string();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // Warn once when the file goes missing, not at every poll.
    let mut unreadable = false;
    loop {
        tokio::select! {
            biased;
            _ = handle.stop.notified() => return,
            _ = handle.tx.closed() => return,
            e = events.recv() => if e.is_none() { return },
            _ = tick.tick() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        while events.try_recv().is_ok() {}

        let bytes = match tokio::fs::read(&handle.path).await {
            Ok(b) => b,
            // Mid-swap, or deleted: not a new dtab. Keep serving; the next
            // event (or poll) reads it again.
            Err(e) => {
                if !unreadable {
                    tracing::warn!("{source}: cannot read, keeping the last good dtab: {e}");
                }
                unreadable = true;
                continue;
            }
        };
        if std::mem::take(&mut unreadable) {
            tracing::info!("{source}: readable again");
        }
        let h = hash_of(&bytes);
        if h == hash {
            continue;
        }
        hash = h;
        match parse(&source, &bytes) {
            Ok(dtab) => {
                let changed = handle.tx.send_if_modified(|cur| {
                    if *cur == dtab {
                        false
                    } else {
                        *cur = dtab;
                        true
                    }
                });
                if changed {
                    tracing::info!("{source}: dtab reloaded");
                }
                handle.stats.record(Ok(()));
                crate::telemetry::metrics::dtab_reload(&source, true);
            }
            Err(errors) => {
                let msg = errors
                    .iter()
                    .map(ParseError::summary)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!("{source}: dtab rejected, keeping the last good one: {msg}");
                handle.stats.record(Err(msg));
                crate::telemetry::metrics::dtab_reload(&source, false);
            }
        }
    }
}
