//! Live naming against real files, a real notify watcher and the system
//! resolver. Every wait is bounded.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use switchyard::dtab::{Dtab, Name, NameTree, Path};
use switchyard::naming::{
    Activity, Addr, Bound, FsNamer, InetResolver, Interpreter, Namer, watch_dtab_file,
};
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(5);

fn p(s: &str) -> Path {
    s.parse().expect("test path")
}

fn d(s: &str) -> Dtab {
    s.parse().expect("test dtab")
}

/// Wait until the watch's value satisfies `f`, at most `limit`.
async fn wait_for<T: Clone + Debug>(
    rx: &mut watch::Receiver<T>,
    limit: Duration,
    what: &str,
    f: impl Fn(&T) -> bool,
) -> T {
    let found = tokio::time::timeout(limit, async {
        loop {
            {
                let v = rx.borrow_and_update();
                if f(&v) {
                    return v.clone();
                }
            }
            if rx.changed().await.is_err() {
                let v = rx.borrow().clone();
                return if f(&v) {
                    v
                } else {
                    panic!("{what}: sender gone, last value {v:?}")
                };
            }
        }
    })
    .await;
    match found {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}; now {:?}", *rx.borrow()),
    }
}

/// Poll a condition that is not a watch (counters), at most `limit`.
async fn eventually(limit: Duration, what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write(path: &FsPath, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

/// Save the way editors do: a temporary file renamed over the target.
fn rename_save(path: &FsPath, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket addr")
}

/// The endpoints as (addr, weight), if bound.
fn eps(a: &Addr) -> Option<Vec<(SocketAddr, f64)>> {
    match a {
        Addr::Bound(e) => Some(e.iter().map(|e| (e.addr, e.weight)).collect()),
        _ => None,
    }
}

/// The single bound leaf of a namer answer.
fn namer_leaf(a: &Activity<NameTree<Name<Bound>>>) -> Option<Bound> {
    match a {
        Activity::Ok(NameTree::Leaf(Name::Bound(b))) => Some(b.clone()),
        _ => None,
    }
}

fn fs_namer(dir: &FsPath) -> FsNamer {
    FsNamer::new(dir, p("/#/io.l5d.fs")).expect("fs namer")
}

// ---------------------------------------------------------------- io.l5d.fs

#[tokio::test]
async fn fs_file_appears_changes_and_disappears() {
    let dir = tempfile::tempdir().unwrap();
    let namer = fs_namer(dir.path());
    let mut rx = namer.lookup(&p("/web/rest"));
    assert_eq!(*rx.borrow_and_update(), Activity::Ok(NameTree::Neg));

    let file = dir.path().join("web");
    write(&file, "# web servers\n\n127.0.0.1 8080\n");
    let v = wait_for(&mut rx, WAIT, "file to bind", |a| namer_leaf(a).is_some()).await;
    let bound = namer_leaf(&v).unwrap();
    assert_eq!(bound.id.to_string(), "/#/io.l5d.fs/web");
    assert_eq!(bound.residual.to_string(), "/rest");
    let mut addr = bound.addr.clone();
    wait_for(&mut addr, WAIT, "first endpoints", |a| {
        eps(a) == Some(vec![(sa("127.0.0.1:8080"), 1.0)])
    })
    .await;

    // Edit: new lines, weights.
    write(&file, "127.0.0.1 8080 * 2.5\n127.0.0.2 8081\n");
    wait_for(&mut addr, WAIT, "edited endpoints", |a| {
        eps(a)
            == Some(vec![
                (sa("127.0.0.1:8080"), 2.5),
                (sa("127.0.0.2:8081"), 1.0),
            ])
    })
    .await;

    // Editors that save by rename.
    rename_save(&file, "127.0.0.3 9000\n");
    wait_for(&mut addr, WAIT, "rename-saved endpoints", |a| {
        eps(a) == Some(vec![(sa("127.0.0.3:9000"), 1.0)])
    })
    .await;
    rename_save(&file, "127.0.0.4 9000\n");
    wait_for(&mut addr, WAIT, "second rename-save", |a| {
        eps(a) == Some(vec![(sa("127.0.0.4:9000"), 1.0)])
    })
    .await;

    // Delete: negative, for the lookup and for the address.
    std::fs::remove_file(&file).unwrap();
    wait_for(&mut rx, WAIT, "lookup to go negative", |a| {
        *a == Activity::Ok(NameTree::Neg)
    })
    .await;
    wait_for(&mut addr, WAIT, "addr to go negative", |a| *a == Addr::Neg).await;
}

#[tokio::test]
async fn fs_malformed_line_keeps_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    write(&file, "127.0.0.1 7000\n");
    // The prefix as Linkerd config writes it; ids still start with /#.
    let namer = FsNamer::new(dir.path(), p("/io.l5d.fs")).unwrap();
    let rx = namer.lookup(&p("/users"));
    let bound = namer_leaf(&rx.borrow()).expect("bound at once");
    assert_eq!(bound.id.to_string(), "/#/io.l5d.fs/users");
    assert_eq!(bound.residual.to_string(), "/");
    let mut addr = bound.addr.clone();
    wait_for(&mut addr, WAIT, "endpoints", |a| eps(a).is_some()).await;
    assert_eq!(namer.errors(), 0);

    write(&file, "127.0.0.1 7000\n127.0.0.2 not-a-port\n");
    eventually(WAIT, "the error to be counted", || namer.errors() == 1).await;
    assert_eq!(
        eps(&addr.borrow()),
        Some(vec![(sa("127.0.0.1:7000"), 1.0)]),
        "last good set kept"
    );

    // Fixed again: taken.
    write(&file, "127.0.0.2 7001\n");
    wait_for(&mut addr, WAIT, "fixed endpoints", |a| {
        eps(a) == Some(vec![(sa("127.0.0.2:7001"), 1.0)])
    })
    .await;
}

#[tokio::test]
async fn fs_malformed_first_read_fails_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("bad"), "# ok\n127.0.0.1\n");
    let namer = fs_namer(dir.path());
    let rx = namer.lookup(&p("/bad"));
    let mut addr = namer_leaf(&rx.borrow()).unwrap().addr;
    let v = wait_for(&mut addr, WAIT, "failure", |a| matches!(a, Addr::Failed(_))).await;
    let Addr::Failed(msg) = v else { unreachable!() };
    assert!(
        msg.contains("bad:2: expected 'host port' or 'host port * weight'"),
        "{msg}"
    );
    assert_eq!(namer.errors(), 1);
}

#[tokio::test]
async fn fs_subdirectories_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let namer = fs_namer(dir.path());
    let mut rx = namer.lookup(&p("/a/b/c"));
    assert_eq!(*rx.borrow_and_update(), Activity::Ok(NameTree::Neg));

    std::fs::create_dir(dir.path().join("a")).unwrap();
    write(&dir.path().join("a").join("b"), "127.0.0.1 1234\n");
    let v = wait_for(&mut rx, WAIT, "nested file", |a| namer_leaf(a).is_some()).await;
    let b = namer_leaf(&v).unwrap();
    assert_eq!(b.id.to_string(), "/#/io.l5d.fs/a/b");
    assert_eq!(b.residual.to_string(), "/c");

    // A directory alone binds nothing; nor does a path that escapes.
    assert_eq!(
        *namer.lookup(&p("/a")).borrow(),
        Activity::Ok(NameTree::Neg)
    );
    assert_eq!(
        *namer.lookup(&p("/a/..")).borrow(),
        Activity::Ok(NameTree::Neg)
    );

    write(&dir.path().join("top"), "127.0.0.1 1\n");
    let want = vec![p("/#/io.l5d.fs/a/b"), p("/#/io.l5d.fs/top")];
    eventually(WAIT, "names list", || namer.names() == want).await;
}

#[tokio::test]
async fn fs_configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = root.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    write(&v1.join("web"), "127.0.0.1 1\n");
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/web", root.join("web")).unwrap();
    let namer = fs_namer(root);
    let rx = namer.lookup(&p("/web"));
    let mut addr = namer_leaf(&rx.borrow()).unwrap().addr;
    wait_for(&mut addr, WAIT, "v1", |a| {
        eps(a) == Some(vec![(sa("127.0.0.1:1"), 1.0)])
    })
    .await;

    let v2 = root.join("..v2");
    std::fs::create_dir(&v2).unwrap();
    write(&v2.join("web"), "127.0.0.1 2\n");
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    wait_for(&mut addr, WAIT, "v2", |a| {
        eps(a) == Some(vec![(sa("127.0.0.1:2"), 1.0)])
    })
    .await;
    // Hidden entries are not service names.
    assert_eq!(namer.names(), vec![p("/#/io.l5d.fs/web")]);
}

#[tokio::test]
async fn fs_host_names_resolve() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("local"), "localhost 8080 * 3\n");
    let namer = fs_namer(dir.path());
    let rx = namer.lookup(&p("/local"));
    let mut addr = namer_leaf(&rx.borrow()).unwrap().addr;
    let v = wait_for(&mut addr, WAIT, "resolved", |a| eps(a).is_some()).await;
    let got = eps(&v).unwrap();
    assert!(!got.is_empty());
    for (a, w) in got {
        assert!(a.ip().is_loopback(), "{a}");
        assert_eq!(a.port(), 8080);
        assert_eq!(w, 3.0);
    }
}

#[tokio::test]
async fn fs_missing_root_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = FsNamer::new(dir.path().join("nope"), p("/#/io.l5d.fs"))
        .err()
        .expect("error");
    assert!(e.to_string().contains("nope"), "{e}");
}

// ---------------------------------------------------------------- /$/inet

#[tokio::test]
async fn inet_literals_are_immediate_and_shared() {
    let inet = InetResolver::default();
    let a = inet.resolve("127.0.0.1", 8080);
    assert_eq!(eps(&a.borrow()), Some(vec![(sa("127.0.0.1:8080"), 1.0)]));
    let b = inet.resolve("127.0.0.1", 8080);
    assert!(a.same_channel(&b));
    let empty = inet.resolve("", 9);
    assert_eq!(eps(&empty.borrow()), Some(vec![(sa("127.0.0.1:9"), 1.0)]));
    let v6 = inet.resolve("::1", 9);
    assert_eq!(eps(&v6.borrow()), Some(vec![(sa("[::1]:9"), 1.0)]));
}

#[tokio::test]
async fn inet_names_resolve_and_stop_when_unused() {
    let inet = InetResolver::new(Duration::from_millis(50));
    let mut a = inet.resolve("localhost", 4140);
    let b = inet.resolve("localhost", 4140);
    assert!(a.same_channel(&b));
    let v = wait_for(&mut a, WAIT, "localhost", |x| eps(x).is_some()).await;
    for (addr, _) in eps(&v).unwrap() {
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 4140);
    }
    assert_eq!(inet.len(), 1);
    drop((a, b));
    eventually(WAIT, "the resolver task to stop", || inet.is_empty()).await;
}

// ---------------------------------------------------------------- dtab file

#[tokio::test]
async fn dtab_file_edit_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dtab");
    write(&file, "/svc => /#/io.l5d.fs;\n");
    let (mut rx, handle) = watch_dtab_file(&file).expect("load");
    assert_eq!(*rx.borrow_and_update(), d("/svc => /#/io.l5d.fs"));

    write(
        &file,
        "/svc => /#/io.l5d.fs;\n/svc/web => /$/inet/127.0.0.1/8080;\n",
    );
    let want = d("/svc => /#/io.l5d.fs; /svc/web => /$/inet/127.0.0.1/8080");
    wait_for(&mut rx, Duration::from_secs(1), "edit in place", |x| {
        *x == want
    })
    .await;
    assert_eq!(handle.stats().reloads, 1);
    assert_eq!(handle.current(), want);
}

#[tokio::test]
async fn dtab_file_rename_save() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dtab");
    write(&file, "/a => /b;\n");
    let (mut rx, _handle) = watch_dtab_file(&file).expect("load");
    for (i, target) in ["/c", "/d", "/e"].iter().enumerate() {
        let text = format!("/a => {target};\n");
        rename_save(&file, &text);
        let want = d(&text);
        wait_for(&mut rx, Duration::from_secs(1), &format!("save {i}"), |x| {
            *x == want
        })
        .await;
    }
}

#[tokio::test]
async fn dtab_file_configmap_symlink_swap() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = root.join("..v1");
    std::fs::create_dir(&v1).unwrap();
    write(&v1.join("dtab"), "/a => /one;\n");
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/dtab", root.join("dtab")).unwrap();

    let (mut rx, _handle) = watch_dtab_file(root.join("dtab")).expect("load");
    assert_eq!(*rx.borrow_and_update(), d("/a => /one"));

    // What the kubelet does: new dir, new symlink, atomic rename over ..data.
    let mut prev = v1;
    for (i, target) in ["/two", "/three"].iter().enumerate() {
        let v = root.join(format!("..v{}", i + 2));
        std::fs::create_dir(&v).unwrap();
        write(&v.join("dtab"), &format!("/a => {target};\n"));
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(v.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        std::fs::remove_dir_all(&prev).unwrap();
        prev = v;
        let want = d(&format!("/a => {target}"));
        wait_for(&mut rx, Duration::from_secs(1), "symlink swap", |x| {
            *x == want
        })
        .await;
    }
}

#[tokio::test]
async fn dtab_file_bad_edit_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dtab");
    write(&file, "/a => /b;\n");
    let (rx, handle) = watch_dtab_file(&file).expect("load");

    write(&file, "/a => /b;\n/c => ^;\n");
    eventually(WAIT, "rejection", || handle.stats().rejections == 1).await;
    assert_eq!(*rx.borrow(), d("/a => /b"), "last good dtab kept");
    let stats = handle.stats();
    assert_eq!(stats.reloads, 0);
    let last = stats.last.expect("last reload");
    let msg = last.result.expect_err("an error");
    let want = format!("{}:2:", file.display());
    assert!(msg.contains(&want), "{msg} should name {want}");

    // A good edit after a bad one is taken.
    let mut rx = rx;
    write(&file, "/a => /z;\n");
    wait_for(&mut rx, Duration::from_secs(1), "good edit", |x| {
        *x == d("/a => /z")
    })
    .await;
    assert_eq!(handle.stats().reloads, 1);
}

#[tokio::test]
async fn dtab_file_bad_at_start_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dtab");
    write(&file, "/a => /b;\n/c =>\n");
    let e = watch_dtab_file(&file).err().expect("error");
    let msg = e.to_string();
    assert!(msg.contains(&format!("{}:", file.display())), "{msg}");
    assert!(watch_dtab_file(dir.path().join("missing")).is_err());
}

// ---------------------------------------------------------------- Interpreter

struct Setup {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    base: watch::Sender<Dtab>,
    interp: Interpreter,
}

fn setup(dtab: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let namer = fs_namer(&root);
    let (base, base_rx) = watch::channel(d(dtab));
    let interp = Interpreter::new(vec![(p("/io.l5d.fs"), Arc::new(namer))], base_rx);
    Setup {
        _dir: dir,
        root,
        base,
        interp,
    }
}

fn shown(a: &Activity<NameTree<Bound>>) -> String {
    match a {
        Activity::Ok(t) => t.to_string(),
        Activity::Pending => "pending".into(),
        Activity::Failed(m) => format!("failed: {m}"),
    }
}

#[tokio::test]
async fn interpreter_follows_file_and_dtab() {
    let s = setup("/svc => /#/io.l5d.fs");
    let mut rx = s.interp.bind(&Dtab::empty(), &p("/svc/web"));
    assert_eq!(shown(&rx.borrow_and_update()), "~");

    write(&s.root.join("web"), "127.0.0.1 8080\n");
    wait_for(&mut rx, WAIT, "file to appear", |a| {
        shown(a) == "/#/io.l5d.fs/web"
    })
    .await;
    let Activity::Ok(NameTree::Leaf(b)) = rx.borrow().clone() else {
        panic!("leaf")
    };
    let mut addr = b.addr.clone();
    wait_for(&mut addr, WAIT, "addr", |a| eps(a).is_some()).await;

    // An endpoint change flows through the Addr watch, with no re-bind.
    write(&s.root.join("web"), "127.0.0.1 8081\n");
    wait_for(&mut addr, WAIT, "addr change", |a| {
        eps(a) == Some(vec![(sa("127.0.0.1:8081"), 1.0)])
    })
    .await;
    assert!(
        !rx.has_changed().unwrap(),
        "no new binding for an Addr change"
    );

    // A dtab change re-binds.
    write(&s.root.join("api"), "127.0.0.1 9090\n");
    s.base.send(d("/svc/web => /#/io.l5d.fs/api")).unwrap();
    wait_for(&mut rx, WAIT, "dtab change", |a| {
        shown(a) == "/#/io.l5d.fs/api"
    })
    .await;

    // The local dtab wins over the base.
    let local = d("/svc/web => /$/inet/127.0.0.1/7777");
    let rl = s.interp.bind(&local, &p("/svc/web"));
    assert_eq!(shown(&rl.borrow()), "/$/inet/127.0.0.1/7777");
    let Activity::Ok(NameTree::Leaf(b)) = rl.borrow().clone() else {
        panic!("leaf")
    };
    assert_eq!(
        eps(&b.addr.borrow()),
        Some(vec![(sa("127.0.0.1:7777"), 1.0)])
    );
}

#[tokio::test]
async fn interpreter_failover_follows_staging() {
    let s = setup("/svc => /#/io.l5d.fs/staging | /#/io.l5d.fs/prod");
    write(&s.root.join("prod"), "127.0.0.1 1\n");
    let mut rx = s.interp.bind(&Dtab::empty(), &p("/svc"));
    wait_for(&mut rx, WAIT, "prod", |a| shown(a) == "/#/io.l5d.fs/prod").await;

    write(&s.root.join("staging"), "127.0.0.1 2\n");
    wait_for(&mut rx, WAIT, "staging appears", |a| {
        shown(a) == "/#/io.l5d.fs/staging"
    })
    .await;

    std::fs::remove_file(s.root.join("staging")).unwrap();
    wait_for(&mut rx, WAIT, "back to prod", |a| {
        shown(a) == "/#/io.l5d.fs/prod"
    })
    .await;
}

#[tokio::test]
async fn interpreter_shares_and_stops() {
    let s = setup("/svc => /#/io.l5d.fs");
    let a = s.interp.bind(&Dtab::empty(), &p("/svc/x"));
    let b = s.interp.bind(&Dtab::empty(), &p("/svc/x"));
    assert!(a.same_channel(&b));
    assert_eq!(s.interp.live_bindings(), 1);
    let c = s.interp.bind(&d("/x => /y"), &p("/svc/x"));
    assert!(!a.same_channel(&c));
    assert_eq!(s.interp.live_bindings(), 2);

    drop((a, b));
    eventually(WAIT, "shared binding to stop", || {
        s.interp.live_bindings() == 1
    })
    .await;
    drop(c);
    eventually(WAIT, "all bindings to stop", || {
        s.interp.live_bindings() == 0
    })
    .await;
}

#[tokio::test]
async fn interpreter_errors_and_system_paths() {
    let s = setup("/svc => /$/inet/127.0.0.1/8080; /bad => /$/nope/x; /nil => /$/nil");
    let ok = s.interp.bind(&Dtab::empty(), &p("/svc"));
    assert_eq!(shown(&ok.borrow()), "/$/inet/127.0.0.1/8080");
    let bad = s.interp.bind(&Dtab::empty(), &p("/bad"));
    assert!(
        shown(&bad.borrow()).starts_with("failed"),
        "{}",
        shown(&bad.borrow())
    );
    let nil = s.interp.bind(&Dtab::empty(), &p("/nil"));
    assert_eq!(shown(&nil.borrow()), "$");
    let unknown = s.interp.bind(&Dtab::empty(), &p("/#/io.l5d.other/x"));
    assert_eq!(shown(&unknown.borrow()), "~");
}

/// A namer driven by hand: every path gets the same answer.
struct Manual {
    tx: watch::Sender<Activity<NameTree<Name<Bound>>>>,
}

impl Manual {
    fn new(first: Activity<NameTree<Name<Bound>>>) -> Arc<Manual> {
        Arc::new(Manual {
            tx: watch::channel(first).0,
        })
    }
    fn set(&self, v: Activity<NameTree<Name<Bound>>>) {
        self.tx.send_replace(v);
    }
}

impl Namer for Manual {
    fn lookup(&self, _: &Path) -> switchyard::naming::NameWatch {
        self.tx.subscribe()
    }
}

fn to_path(s: &str) -> Activity<NameTree<Name<Bound>>> {
    Activity::Ok(NameTree::Leaf(Name::Path(p(s))))
}

#[tokio::test]
async fn interpreter_namer_order_pending_and_failure() {
    let first = Manual::new(Activity::Pending);
    let second = Manual::new(to_path("/$/inet/127.0.0.1/2"));
    let (_base, base_rx) = watch::channel(d("/svc => /#/m"));
    let interp = Interpreter::new(
        vec![
            (p("/m"), first.clone() as Arc<dyn Namer>),
            (p("/m"), second.clone() as Arc<dyn Namer>),
        ],
        base_rx,
    );
    let mut rx = interp.bind(&Dtab::empty(), &p("/svc/x"));
    assert_eq!(shown(&rx.borrow_and_update()), "pending");

    // The first namer says Neg: the second one answers.
    first.set(Activity::Ok(NameTree::Neg));
    wait_for(&mut rx, WAIT, "fall to the second namer", |a| {
        shown(a) == "/$/inet/127.0.0.1/2"
    })
    .await;

    // The first namer answers: it wins; its path is bound again.
    first.set(to_path("/$/inet/127.0.0.1/1"));
    wait_for(&mut rx, WAIT, "first namer wins", |a| {
        shown(a) == "/$/inet/127.0.0.1/1"
    })
    .await;

    first.set(Activity::Failed("boom".into()));
    let v = wait_for(&mut rx, WAIT, "failure", |a| {
        matches!(a, Activity::Failed(_))
    })
    .await;
    assert!(shown(&v).contains("boom"), "{}", shown(&v));
}

#[tokio::test]
async fn interpreter_delegate_json() {
    let s = setup("/svc => /#/io.l5d.fs");
    write(&s.root.join("web"), "127.0.0.1 8080 * 2\n");
    // Let the file be read so the trace shows its address.
    let rx = s.interp.bind(&Dtab::empty(), &p("/svc/web"));
    let Activity::Ok(NameTree::Leaf(b)) = rx.borrow().clone() else {
        panic!("leaf")
    };
    let mut addr = b.addr.clone();
    wait_for(&mut addr, WAIT, "addr", |a| eps(a).is_some()).await;

    let trace = s.interp.delegate(&Dtab::empty(), &p("/svc/web"));
    let json = serde_json::to_value(&trace).unwrap();
    assert_eq!(json["type"], "delegate");
    assert_eq!(json["path"], "/svc/web");
    let leaf = &json["delegate"];
    assert_eq!(leaf["type"], "leaf");
    assert_eq!(leaf["path"], "/#/io.l5d.fs/web");
    assert_eq!(leaf["dentry"]["prefix"], "/svc");
    assert_eq!(leaf["bound"]["id"], "/#/io.l5d.fs/web");
    assert_eq!(leaf["bound"]["path"], "/");
    assert_eq!(
        leaf["bound"]["addr"],
        serde_json::json!({"type": "bound", "meta": {}, "addrs": [
            {"ip": "127.0.0.1", "port": 8080, "meta": {"endpoint_addr_weight": 2.0}}
        ]})
    );
}

#[tokio::test]
async fn interpreter_delegate_waits_for_pending_namers() {
    let m = Manual::new(Activity::Pending);
    let (_base, base_rx) = watch::channel(d("/svc => /#/m"));
    let interp = Interpreter::new(vec![(p("/m"), m.clone() as Arc<dyn Namer>)], base_rx);
    let now = serde_json::to_value(interp.delegate(&Dtab::empty(), &p("/svc"))).unwrap();
    assert_eq!(now["type"], "exception", "{now}");

    let later = {
        let m = m.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            m.set(to_path("/$/inet/127.0.0.1/1"));
        })
    };
    let t = interp
        .delegate_ready(&Dtab::empty(), &p("/svc"), WAIT)
        .await;
    later.await.unwrap();
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(
        json["delegate"]["bound"]["id"], "/$/inet/127.0.0.1/1",
        "{json}"
    );
}

#[tokio::test]
async fn dtab_file_deleted_then_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dtab");
    write(&file, "/a => /b;\n");
    let (mut rx, handle) = watch_dtab_file(&file).expect("load");
    std::fs::remove_file(&file).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handle.current(), d("/a => /b"), "kept while missing");
    write(&file, "/a => /c;\n");
    wait_for(&mut rx, Duration::from_secs(1), "recreated", |x| {
        *x == d("/a => /c")
    })
    .await;
    assert_eq!(handle.stats().rejections, 0);
}
