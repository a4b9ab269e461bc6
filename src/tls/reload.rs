//! Certificates and keys that reload when their files change.
//!
//! The built rustls config sits in an `ArcSwap`; the acceptor or connector
//! loads it once per new connection, so a reload changes what the next
//! handshake uses and nothing else: open connections keep the config they
//! were made with.
//!
//! The watch follows the project's pattern for files (see
//! `naming::dtab_file`): watch each file's parent directory, not the file
//! (editors rename over it, Kubernetes swaps a `..data` symlink, cert-manager
//! rewrites the directory), debounce, re-read every file by path, and
//! rebuild only when their combined content hash changed. A poll every few
//! seconds catches file systems that send no events.
//!
//! A certificate and its key are usually written one after the other, so
//! the first event can see a new certificate with the old key. A build that
//! fails is retried after a short settle time while the files keep
//! changing; only a failure on contents that stayed put is reported (logged
//! with the file and the reason, counted) and the old config stays in
//! service.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::Watcher;
use tokio::sync::mpsc;

use super::failure::TlsStats;
use super::{TlsError, files};

/// Events closer together than this are handled as one.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// How long to wait for a half-written set of files to be completed.
const SETTLE: Duration = Duration::from_millis(250);
/// Tries on changing contents before a build failure is reported.
const SETTLE_TRIES: usize = 4;
/// Re-read this often even without events.
const POLL: Duration = Duration::from_secs(5);

/// A file the config is built from, with the config key that named it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// `certPath`, `keyPath`, `caCertPath`, ...
    pub key: &'static str,
    /// The file.
    pub path: PathBuf,
}

/// The bytes of every source, read together.
pub struct Contents {
    files: Vec<(Source, Vec<u8>)>,
}

impl Contents {
    /// Read every source; the first unreadable one is the error.
    pub fn read(sources: &[Source]) -> Result<Contents, TlsError> {
        let mut files = Vec::with_capacity(sources.len());
        for s in sources {
            let bytes = files::read(s.key, &s.path)?;
            files.push((s.clone(), bytes));
        }
        Ok(Contents { files })
    }

    /// The bytes of `path` (empty if it is not one of the sources).
    pub fn get(&self, path: &Path) -> &[u8] {
        self.files
            .iter()
            .find(|(s, _)| s.path == path)
            .map_or(&[][..], |(_, b)| b.as_slice())
    }

    fn hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for (s, b) in &self.files {
            s.path.hash(&mut h);
            b.hash(&mut h);
        }
        h.finish()
    }
}

/// How a config is built from its files. `strict` is true on reloads: a
/// certificate outside its validity window is then refused rather than
/// warned about, since the one in service is the better choice.
pub type Build<T> = dyn Fn(&Contents, bool) -> Result<T, TlsError> + Send + Sync;

/// Settings that name the files a rustls config is built from: what server
/// and client TLS have in common, so both load and reload the same way.
pub(crate) trait Settings: Clone + Send + Sync + 'static {
    /// The rustls config built.
    type Config: Send + Sync + 'static;
    /// Check the settings themselves, before any file is read.
    fn check(&self) -> Result<(), TlsError>;
    /// The files to read and watch.
    fn sources(&self) -> Vec<Source>;
    /// Build the config from file contents, offering `alpn`.
    fn build(
        &self,
        contents: &Contents,
        strict: bool,
        alpn: &[&[u8]],
    ) -> Result<Self::Config, TlsError>;
}

/// Load `settings`' files now (errors are fatal and name the file) and
/// follow them from then on; `name` labels logs and `/tls.json`.
pub(crate) fn load<S: Settings>(
    settings: &S,
    name: impl Into<String>,
    alpn: &[&[u8]],
) -> Result<Arc<Reloading<S::Config>>, TlsError> {
    settings.check()?;
    let stats = TlsStats::new(name);
    let s = settings.clone();
    let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
    let build: Arc<Build<S::Config>> = Arc::new(move |c: &Contents, strict| {
        let alpn: Vec<&[u8]> = alpn.iter().map(Vec::as_slice).collect();
        s.build(c, strict, &alpn)
    });
    Reloading::start(settings.sources(), stats, build)
}

/// A config that follows its files.
pub struct Reloading<T> {
    current: ArcSwap<T>,
    stats: Arc<TlsStats>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("stats", &self.stats.name())
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Build the config from `sources` now (an error here is fatal to the
    /// caller), then rebuild it whenever the files change, for as long as
    /// the returned value lives.
    ///
    /// Watching needs a tokio runtime; outside one the config is static.
    pub fn start(
        sources: Vec<Source>,
        stats: Arc<TlsStats>,
        build: Arc<Build<T>>,
    ) -> Result<Arc<Reloading<T>>, TlsError> {
        let contents = Contents::read(&sources)?;
        let first = build(&contents, false)?;
        let hash = contents.hash();
        let me = Arc::new(Reloading {
            current: ArcSwap::from_pointee(first),
            stats,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let (watcher, events) = watch_dirs(&sources)?;
            tokio::spawn(run(
                Arc::downgrade(&me),
                sources,
                build,
                watcher,
                events,
                hash,
            ));
        }
        Ok(me)
    }

    /// The config in service now.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TlsStats> {
        &self.stats
    }
}

fn watch_dirs(
    sources: &[Source],
) -> Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<()>), TlsError> {
    let (tx, rx) = mpsc::unbounded_channel::<()>();
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
            tracing::warn!("TLS file watcher: {e}");
        }
        let _ = tx.send(());
    })
    .map_err(|error| TlsError::Watch {
        path: PathBuf::from("."),
        error,
    })?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for s in sources {
        let dir = match s.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            watcher
                .watch(&dir, notify::RecursiveMode::NonRecursive)
                .map_err(|error| TlsError::Watch {
                    path: dir.clone(),
                    error,
                })?;
            dirs.push(dir);
        }
    }
    Ok((watcher, rx))
}

async fn run<T: Send + Sync + 'static>(
    me: Weak<Reloading<T>>,
    sources: Vec<Source>,
    build: Arc<Build<T>>,
    watcher: notify::RecommendedWatcher,
    mut events: mpsc::UnboundedReceiver<()>,
    mut hash: u64,
) {
    let _watcher = watcher;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            e = events.recv() => if e.is_none() { return },
            _ = tick.tick() => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
        while events.try_recv().is_ok() {}
        let Some(target) = me.upgrade() else { return };
        let name = target.stats.name().to_string();

        let mut tries = 0;
        loop {
            let contents = match Contents::read(&sources) {
                Ok(c) => c,
                // Mid-swap or deleted: not a new certificate. The next
                // event (or poll) reads again.
                Err(e) => {
                    tracing::debug!("TLS {name}: {e}");
                    break;
                }
            };
            let h = contents.hash();
            if h == hash {
                break;
            }
            match build(&contents, true) {
                Ok(cfg) => {
                    hash = h;
                    target.current.store(Arc::new(cfg));
                    target.stats.reload(Ok(()));
                    tracing::info!("TLS {name}: certificates reloaded");
                    break;
                }
                Err(e) if tries + 1 < SETTLE_TRIES => {
                    tries += 1;
                    tracing::debug!(
                        "TLS {name}: not taking new files yet ({e}); waiting for them to settle"
                    );
                    tokio::time::sleep(SETTLE).await;
                    // Only a change since this read is worth another try.
                    match Contents::read(&sources) {
                        Ok(again) if again.hash() != h => continue,
                        _ => {
                            hash = h;
                            report(&target, &name, &e);
                            break;
                        }
                    }
                }
                Err(e) => {
                    hash = h;
                    report(&target, &name, &e);
                    break;
                }
            }
        }
        while events.try_recv().is_ok() {}
    }
}

fn report<T>(target: &Reloading<T>, name: &str, e: &TlsError) {
    tracing::warn!("TLS {name}: new certificate refused, keeping the one in service: {e}");
    target.stats.reload(Err(e.to_string()));
}
