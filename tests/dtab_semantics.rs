//! Finagle's dtab semantics, spec `shared/docs/dtab-semantics.md` §4-§9,
//! one test (or more) per rule.

use proptest::prelude::*;
use switchyard::dtab::system::{self, SystemAnswer, SystemBound, SystemNamers};
use switchyard::dtab::{
    BindError, Dentry, Dtab, Name, NameTree, NamerAnswer, Namers, Path, Weighted, bind, bind_tree,
};

fn p(s: &str) -> Path {
    s.parse().unwrap_or_else(|e| panic!("bad path {s}: {e}"))
}

fn t(s: &str) -> NameTree<Path> {
    s.parse().unwrap_or_else(|e| panic!("bad tree {s}: {e}"))
}

fn d(s: &str) -> Dtab {
    s.parse().unwrap_or_else(|e| panic!("bad dtab {s}: {e}"))
}

fn show<T: std::fmt::Display>(t: &NameTree<T>) -> String {
    t.to_string()
}

/// Bind with the system namers only and show the result.
fn bind_show(dtab: &str, path: &str) -> Result<String, BindError> {
    bind(&d(dtab), &p(path), &mut SystemNamers).map(|t| t.to_string())
}

// ======================= §4 show =======================

#[test]
fn s4_show_constants_and_leaves() {
    assert_eq!(show(&t("!")), "!");
    assert_eq!(show(&t("~")), "~");
    assert_eq!(show(&t("$")), "$");
    assert_eq!(show(&t("/foo/bar")), "/foo/bar");
}

#[test]
fn s4_bound_leaf_shows_id_without_residual() {
    let r = bind(&Dtab::empty(), &p("/$/inet/h/80/rest"), &mut SystemNamers).unwrap();
    assert_eq!(show(&r), "/$/inet/h/80");
    let NameTree::Leaf(b) = r else { panic!() };
    assert_eq!(b.residual, p("/rest"));
}

#[test]
fn s4_show_alt_and_union_parenthesisation() {
    assert_eq!(show(&t("/a|/b")), "/a | /b");
    assert_eq!(show(&t("/a | (/b | /c)")), "/a | (/b | /c)");
    assert_eq!(show(&t("/a & /b | /c")), "/a & /b | /c");
    assert_eq!(show(&t("/a & (/b | /c)")), "/a & (/b | /c)");
    assert_eq!(show(&t("/a & (/b & /c)")), "/a & (/b & /c)");
    assert_eq!(show(&t("((/a))")), "/a");
}

#[test]
fn s4_show_weights() {
    assert_eq!(
        show(&t("0.5*/a & 2*/b & 0*/c & 1*/d")),
        "0.50*/a & 2.00*/b & 0.00*/c & /d"
    );
    assert_eq!(show(&t("3 * (/a | /b) & /c")), "3.00*(/a | /b) & /c");
    // Single-child union: weight dropped.
    assert_eq!(show(&t("2 * /a")), "/a");
    assert_eq!(
        show(&NameTree::Union(vec![Weighted::new(
            2.0,
            NameTree::Leaf(p("/a"))
        )])),
        "/a"
    );
    assert_eq!(show(&NameTree::Alt(vec![NameTree::Leaf(p("/a"))])), "/a");
}

#[test]
fn s4_show_dentry_and_dtab() {
    let de: Dentry = "/a/*/c => /d".parse().unwrap();
    assert_eq!(de.to_string(), "/a/*/c=>/d");
    assert_eq!(
        d("/=>!;/foo => /bar | /baz;").to_string(),
        "/=>!;/foo=>/bar | /baz"
    );
    assert_eq!(Dtab::empty().to_string(), "");
    assert_eq!(d("/ => /a").to_string(), "/=>/a");
}

#[test]
fn s4_show_does_not_simplify() {
    assert_eq!(show(&t("/a | /a")), "/a | /a");
    assert_eq!(show(&t("~ | /b")), "~ | /b");
    assert_eq!(d("/a=>~").to_string(), "/a=>~");
}

// ======================= §5 lookup =======================

#[test]
fn s5_lookup_wildcard_consumes_element() {
    assert_eq!(show(&d("/a/*/c => /d").lookup(&p("/a/b/c/e/f"))), "/d/e/f");
}

#[test]
fn s5_lookup_last_first_alt_unsimplified() {
    let dt = d("/foo=>/bah | /beh | /$/fail; /foo=>/bar");
    assert_eq!(
        show(&dt.lookup(&p("/foo/humbug"))),
        "/bar/humbug | (/bah/humbug | /beh/humbug | /$/fail/humbug)"
    );
}

#[test]
fn s5_lookup_no_match_is_neg_and_elementwise() {
    assert_eq!(d("/foo=>/bar").lookup(&p("/foobar")), NameTree::Neg);
    assert_eq!(d("").lookup(&p("/x")), NameTree::Neg);
    // Empty prefix matches everything, including /.
    assert_eq!(show(&d("/=>/r").lookup(&p("/"))), "/r");
    assert_eq!(show(&d("/=>/r").lookup(&p("/x/y"))), "/r/x/y");
    // Prefix longer than path does not match.
    assert_eq!(d("/a/b=>/c").lookup(&p("/a")), NameTree::Neg);
}

#[test]
fn s5_lookup_keeps_constants_weights_and_single_neg() {
    assert_eq!(
        show(&d("/a=>2*/b & ! & ~ & $").lookup(&p("/a/x"))),
        "2.00*/b/x & ! & ~ & $"
    );
    assert_eq!(d("/a=>~").lookup(&p("/a")), NameTree::Neg);
    assert_eq!(show(&d("/a=>~;/a=>~").lookup(&p("/a"))), "~ | ~");
}

// ======================= §6.4 simplify =======================

fn simp(s: &str) -> String {
    show(&t(s).simplified())
}

#[test]
fn s64_simplify_alt() {
    assert_eq!(show(&NameTree::<Path>::Alt(vec![]).simplified()), "~");
    assert_eq!(show(&NameTree::Alt(vec![t("~ | /a")]).simplified()), "/a");
    assert_eq!(simp("~ | /a | ~"), "/a");
    assert_eq!(simp("~ | ~"), "~");
    assert_eq!(simp("/a | ! | /b"), "/a | !");
    assert_eq!(simp("! | /a"), "!");
    assert_eq!(simp("~ | ! | /a"), "!");
    assert_eq!(simp("/a | $ | /b"), "/a | $ | /b");
    // Not flattened.
    assert_eq!(simp("/a | (/b | ~ | /c)"), "/a | (/b | /c)");
    assert_eq!(simp("/a | (~ | /c)"), "/a | /c");
}

#[test]
fn s64_simplify_union() {
    assert_eq!(show(&NameTree::<Path>::Union(vec![]).simplified()), "~");
    assert_eq!(simp("! & !"), "~");
    assert_eq!(simp("~ & ~"), "~");
    assert_eq!(simp("/a & ~ & $"), "/a & $");
    assert_eq!(simp("2*/a & ~ & !"), "/a");
    assert_eq!(simp("2*/a & 3*/b & !"), "2.00*/a & 3.00*/b");
    assert_eq!(simp("$ & $"), "$ & $");
    assert_eq!(simp("(/a & ~) & /b"), "/a & /b");
    assert_eq!(simp("(/a & /b) & /c"), "(/a & /b) & /c");
    assert_eq!(
        NameTree::Union(vec![Weighted::new(5.0, t("/a | /b"))]).simplified(),
        t("/a | /b")
    );
}

#[test]
fn s64_simplify_leaves_and_constants_unchanged() {
    for s in ["/a", "!", "~", "$"] {
        assert_eq!(simp(s), s);
    }
}

fn arb_tree() -> impl Strategy<Value = NameTree<Path>> {
    let leaf = prop_oneof![
        Just(NameTree::Neg),
        Just(NameTree::Fail),
        Just(NameTree::Empty),
        (0u8..4).prop_map(|i| NameTree::Leaf(p(&format!("/l{i}")))),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(NameTree::Alt),
            prop::collection::vec((0u8..4, inner), 0..4).prop_map(|ws| {
                NameTree::Union(
                    ws.into_iter()
                        .map(|(w, t)| Weighted::new(f64::from(w), t))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #[test]
    fn s64_simplify_is_idempotent(tree in arb_tree()) {
        let once = tree.simplified();
        prop_assert_eq!(once.simplified(), once.clone());
    }

    #[test]
    fn s64_simplify_preserves_eval(tree in arb_tree()) {
        let mut a = tree.eval();
        let mut b = tree.simplified().eval();
        if let Some(v) = a.as_mut() { v.sort(); }
        if let Some(v) = b.as_mut() { v.sort(); }
        prop_assert_eq!(a, b);
    }

    #[test]
    fn s4_show_reparses(tree in arb_tree()) {
        // Show drops single-child nodes and empty nodes don't parse; simplified
        // trees with integer weights round-trip.
        let s = tree.simplified();
        let shown = s.to_string();
        let back: NameTree<Path> = shown.parse().unwrap();
        prop_assert_eq!(back.to_string(), shown);
    }
}

// ======================= §6.5 eval =======================

fn ev(s: &str) -> Option<Vec<String>> {
    t(s).eval().map(|v| {
        let mut v: Vec<String> = v.iter().map(|p| p.to_string()).collect();
        v.sort();
        v
    })
}

fn set(v: &[&str]) -> Option<Vec<String>> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    Some(v)
}

#[test]
fn s65_eval_vectors() {
    assert_eq!(ev("/ok & ~ & /blah & $"), set(&["/ok", "/blah"]));
    assert_eq!(ev("$ & $ & $"), set(&[]));
    assert_eq!(ev("~ & ~ & (~ | ~)"), None);
    assert_eq!(ev("~ | $ | /blah"), set(&[]));
    assert_eq!(ev("! | /ok"), None);
    assert_eq!(ev("/ok & !"), set(&["/ok"]));
    assert_eq!(ev("! & ! & !"), None);
    assert_eq!(ev("~ | /ok | !"), set(&["/ok"]));
    assert_eq!(
        ev("(~|$|/foo) & (/bar|/blah) & ~ & /FOO"),
        set(&["/bar", "/FOO"])
    );
}

#[test]
fn s65_eval_basics() {
    assert_eq!(ev("!"), None);
    assert_eq!(ev("~"), None);
    assert_eq!(ev("$"), set(&[]));
    assert_eq!(ev("/a"), set(&["/a"]));
    assert_eq!(ev("2*/a & 3*/a"), set(&["/a"]));
    // Alt skips children that evaluate to ~, not only literal ~.
    assert_eq!(ev("(~ | ~) | /a"), set(&["/a"]));
    assert_eq!(ev("(~ | !) | /a"), None);
}

// ======================= §6.2 system namers =======================

fn inet(id: &str, host: &str, port: u16, residual: &str) -> SystemAnswer {
    SystemAnswer::Inet {
        id: p(id),
        host: host.into(),
        port,
        residual: p(residual),
    }
}

fn sys(s: &str) -> SystemAnswer {
    system::lookup(&p(s))
}

fn rewritten(s: &str) -> SystemAnswer {
    SystemAnswer::Tree(NameTree::Leaf(p(s)))
}

const NEG: SystemAnswer = SystemAnswer::Tree(NameTree::Neg);

#[test]
fn s62_inet_long_form() {
    assert_eq!(
        sys("/$/inet/127.0.0.1/8080/foo/bar"),
        inet("/$/inet/127.0.0.1/8080", "127.0.0.1", 8080, "/foo/bar")
    );
    assert_eq!(sys("/$/inet/h/0"), inet("/$/inet/h/0", "h", 0, "/"));
    assert_eq!(
        sys("/$/inet/h/65535"),
        inet("/$/inet/h/65535", "h", 65535, "/")
    );
    assert_eq!(
        sys("/$/inet/8080/9090"),
        inet("/$/inet/8080/9090", "8080", 9090, "/")
    );
}

#[test]
fn s62_fixedinet_has_inet_id() {
    assert_eq!(
        sys("/$/fixedinet/web/80/x"),
        inet("/$/inet/web/80", "web", 80, "/x")
    );
}

#[test]
fn s62_inet_short_form() {
    assert_eq!(
        sys("/$/inet/1234/foobar"),
        inet("/$/inet/1234", "", 1234, "/foobar")
    );
    assert_eq!(sys("/$/inet/1234"), inet("/$/inet/1234", "", 1234, "/"));
    // A port out of range is not a port: short form with residual.
    assert_eq!(
        sys("/$/inet/80/70000/x"),
        inet("/$/inet/80", "", 80, "/70000/x")
    );
}

#[test]
fn s62_inet_errors() {
    assert_eq!(
        sys("/$/inet"),
        SystemAnswer::Error("Unknown namer: inet for path: /$/inet".into())
    );
    assert!(matches!(sys("/$/inet/host"), SystemAnswer::Error(_)));
    assert!(matches!(sys("/$/inet/host/70000"), SystemAnswer::Error(_)));
    assert!(matches!(sys("/$/inet/host/http"), SystemAnswer::Error(_)));
}

#[test]
fn s62_fail_nil_elementwise() {
    assert_eq!(sys("/$/fail"), SystemAnswer::Tree(NameTree::Fail));
    assert_eq!(sys("/$/fail/x/y"), SystemAnswer::Tree(NameTree::Fail));
    assert_eq!(sys("/$/nil"), SystemAnswer::Tree(NameTree::Empty));
    assert_eq!(sys("/$/nil/x"), SystemAnswer::Tree(NameTree::Empty));
    assert_eq!(
        sys("/$/failure"),
        SystemAnswer::Error("Unknown namer: failure for path: /$/failure".into())
    );
}

#[test]
fn s62_unknown_and_not_system() {
    assert_eq!(
        sys("/$/foo/bar"),
        SystemAnswer::Error("Unknown namer: foo for path: /$/foo/bar".into())
    );
    for s in ["/svc/x", "/", "/#/io.l5d.fs/x", "/$", "/x/$/inet/h/1"] {
        assert_eq!(sys(s), SystemAnswer::NotSystem, "{s}");
    }
}

#[test]
fn s62_rinet() {
    assert_eq!(
        sys("/$/io.buoyant.rinet/8080/localhost/x"),
        inet(
            "/$/io.buoyant.rinet/8080/localhost",
            "localhost",
            8080,
            "/x"
        )
    );
    assert_eq!(sys("/$/io.buoyant.rinet/8080"), NEG);
    assert_eq!(sys("/$/io.buoyant.rinet"), NEG);
    assert!(matches!(
        sys("/$/io.buoyant.rinet/http/localhost"),
        SystemAnswer::Error(_)
    ));
}

#[test]
fn s62_hostport_pfx() {
    assert_eq!(
        sys("/$/io.buoyant.hostportPfx/inet/127.0.0.1:8080/x"),
        rewritten("/inet/127.0.0.1/8080/x")
    );
    assert_eq!(
        sys("/$/io.buoyant.porthostPfx/inet/127.0.0.1:8080/x"),
        rewritten("/inet/8080/127.0.0.1/x")
    );
    // Named ports are DNS labels.
    assert_eq!(
        sys("/$/io.buoyant.hostportPfx/k8s/web:http"),
        rewritten("/k8s/web/http")
    );
    // No port, bad port, too many colons, missing host part: ~.
    for s in [
        "/$/io.buoyant.hostportPfx/inet/127.0.0.1/x",
        "/$/io.buoyant.hostportPfx/inet/web:HTTP",
        "/$/io.buoyant.hostportPfx/inet/a:b:c",
        "/$/io.buoyant.hostportPfx/inet/web:",
        "/$/io.buoyant.hostportPfx/inet",
        "/$/io.buoyant.hostportPfx",
    ] {
        assert_eq!(sys(s), NEG, "{s}");
    }
}

#[test]
fn s62_domain_to_path_pfx() {
    assert_eq!(
        sys("/$/io.buoyant.http.domainToPathPfx/pfx/a.b.c/x"),
        rewritten("/pfx/c/b/a/x")
    );
    // A port stays attached to the last domain part.
    assert_eq!(
        sys("/$/io.buoyant.http.domainToPathPfx/pfx/a.b.c:8080"),
        rewritten("/pfx/c:8080/b/a")
    );
    assert_eq!(
        sys("/$/io.buoyant.http.domainToPath/foo.buoyant.io/r"),
        rewritten("/io/buoyant/foo/r")
    );
    assert_eq!(sys("/$/io.buoyant.http.domainToPathPfx/pfx/a\\x20b"), NEG);
    assert_eq!(sys("/$/io.buoyant.http.domainToPathPfx/pfx"), NEG);
}

#[test]
fn s62_subdomain_of_pfx() {
    let ns = "/$/io.buoyant.http.subdomainOfPfx/buoyant.io/pfx";
    assert_eq!(
        sys(&format!("{ns}/foo.buoyant.io/x")),
        rewritten("/pfx/foo/x")
    );
    assert_eq!(
        sys(&format!("{ns}/foo.buoyant.io:8080/x")),
        rewritten("/pfx/foo/x")
    );
    assert_eq!(
        sys(&format!("{ns}/a.foo.buoyant.io")),
        rewritten("/pfx/a.foo")
    );
    for h in [
        "foo.example.com",
        "buoyant.io",
        ".buoyant.io",
        "xbuoyant.io",
    ] {
        assert_eq!(sys(&format!("{ns}/{h}/x")), NEG, "{h}");
    }
    assert_eq!(
        sys("/$/io.buoyant.http.subdomainOf/buoyant.io/foo.buoyant.io/r"),
        rewritten("/foo/r")
    );
}

#[test]
fn s62_any_method_and_host() {
    assert_eq!(
        sys("/$/io.buoyant.http.anyMethod/GET/svc/a"),
        rewritten("/svc/a")
    );
    assert_eq!(sys("/$/io.buoyant.http.anyMethod/get/svc"), NEG);
    assert_eq!(
        sys("/$/io.buoyant.http.anyMethodPfx/pfx/POST/svc"),
        rewritten("/pfx/svc")
    );
    assert_eq!(
        sys("/$/io.buoyant.http.anyHost/a.b:80/svc"),
        rewritten("/svc")
    );
    assert_eq!(
        sys("/$/io.buoyant.http.anyHostPfx/p/a.b/svc"),
        rewritten("/p/svc")
    );
}

#[test]
fn s62_rewriting_namer_result_is_bound_again() {
    assert_eq!(
        bind_show(
            "/svc => /$/io.buoyant.hostportPfx/inet; /inet => /$/inet",
            "/svc/127.0.0.1:8080/x"
        ),
        Ok("/$/inet/127.0.0.1/8080".into())
    );
    assert_eq!(
        bind_show("/svc => /$/io.buoyant.hostportPfx/inet", "/svc/nohost"),
        Ok("~".into())
    );
}

#[test]
fn s62_system_namers_leave_configured_paths_neg() {
    assert_eq!(bind_show("", "/#/io.l5d.fs/web"), Ok("~".into()));
}

// ======================= §6.1 / §6.3 bind =======================

#[test]
fn s63_bind_basic_rewrite() {
    let r = bind(
        &d("/svc => /$/inet/127.0.0.1/8080"),
        &p("/svc/foo"),
        &mut SystemNamers,
    )
    .unwrap();
    let NameTree::Leaf(SystemBound { id, residual }) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(id, &p("/$/inet/127.0.0.1/8080"));
    assert_eq!(residual, &p("/foo"));
    assert_eq!(bind_show("", "/nothing"), Ok("~".into()));
}

#[test]
fn s63_alt_is_lazy_in_order() {
    let dt = "/b => ~; /c => /$/inet/h/1; /a => /b | /c | /$/unknown";
    assert_eq!(bind_show(dt, "/a"), Ok("/$/inet/h/1".into()));
    // Fail stops, even before a good branch.
    assert_eq!(bind_show("/a => ! | /$/inet/h/1", "/a"), Ok("!".into()));
    assert_eq!(
        bind_show("/a => /$/fail | /$/inet/h/1", "/a"),
        Ok("!".into())
    );
    // Empty stops.
    assert_eq!(bind_show("/a => $ | /$/inet/h/1", "/a"), Ok("$".into()));
    assert_eq!(
        bind_show("/a => /$/nil | /$/inet/h/1", "/a"),
        Ok("$".into())
    );
    // A union stops.
    assert_eq!(
        bind_show("/a => (/$/inet/h/1 & /$/inet/h/2) | /$/inet/h/3", "/a"),
        Ok("/$/inet/h/1 & /$/inet/h/2".into())
    );
    // All negative.
    assert_eq!(bind_show("/a => ~ | /nope", "/a"), Ok("~".into()));
}

#[test]
fn s63_alt_errors_propagate() {
    assert_eq!(
        bind_show("/a => /$/unknown | /$/inet/h/1", "/a"),
        Err(BindError::Namer {
            path: p("/$/unknown"),
            message: "Unknown namer: unknown for path: /$/unknown".into()
        })
    );
}

#[test]
fn s63_union_keeps_successes_with_weights() {
    assert_eq!(
        bind_show("/a => 2*/$/inet/h/1 & 3*/$/inet/h/2", "/a"),
        Ok("2.00*/$/inet/h/1 & 3.00*/$/inet/h/2".into())
    );
    // Errors ignored when some member bound; ! and ~ dropped, $ kept.
    assert_eq!(
        bind_show("/a => /$/inet/h/1 & /$/unknown & ! & ~", "/a"),
        Ok("/$/inet/h/1".into())
    );
    assert_eq!(
        bind_show("/a => /$/inet/h/1 & $", "/a"),
        Ok("/$/inet/h/1 & $".into())
    );
    assert_eq!(bind_show("/a => ! & ~", "/a"), Ok("~".into()));
    // None bound: the first error.
    assert_eq!(
        bind_show("/a => /$/one & /$/two", "/a").map_err(|e| e.to_string()),
        Err("Unknown namer: one for path: /$/one".into())
    );
}

#[test]
fn s63_result_is_simplified_without_alt() {
    assert_eq!(
        bind_show("/x => /$/inet/h/1; /a => (~ | /x) & (/nope | ~)", "/a"),
        Ok("/$/inet/h/1".into())
    );
}

fn chain(n: usize) -> String {
    let mut s: Vec<String> = (0..n).map(|i| format!("/p{i} => /p{}", i + 1)).collect();
    s.push(format!("/p{n} => /$/inet/h/1"));
    s.join(";\n")
}

#[test]
fn s63_depth_chain_99_ok_100_fails() {
    // A chain of N dentries ending in a system path: N+1 lookups.
    assert_eq!(bind_show(&chain(98), "/p0"), Ok("/$/inet/h/1".into()));
    assert_eq!(bind_show(&chain(99), "/p1"), Ok("/$/inet/h/1".into()));
    // chain(99) has 100 dentries (p0..p99 => ..., and p99 => inet).
    let c99: String = {
        let mut s: Vec<String> = (0..98).map(|i| format!("/p{i} => /p{}", i + 1)).collect();
        s.push("/p98 => /$/inet/h/1".into());
        s.join(";")
    };
    assert_eq!(d(&c99).len(), 99);
    assert_eq!(bind_show(&c99, "/p0"), Ok("/$/inet/h/1".into()));
    let c100: String = {
        let mut s: Vec<String> = (0..99).map(|i| format!("/p{i} => /p{}", i + 1)).collect();
        s.push("/p99 => /$/inet/h/1".into());
        s.join(";")
    };
    assert_eq!(d(&c100).len(), 100);
    assert_eq!(bind_show(&c100, "/p0"), Err(BindError::MaxDepth));
}

#[test]
fn s63_cycles_and_growing_rewrites_fail() {
    assert_eq!(
        bind_show("/foo/bar=>/bar/foo;/bar/foo=>/foo/bar", "/foo/bar"),
        Err(BindError::MaxDepth)
    );
    assert_eq!(bind_show("/s=>/s/srv", "/s"), Err(BindError::MaxDepth));
    assert_eq!(
        BindError::MaxDepth.to_string(),
        "Max recursion level: 100 reached in Namer lookup"
    );
}

#[test]
fn s63_fan_out_is_bounded() {
    assert_eq!(
        bind_show("/a => /a/x & /a/y", "/a"),
        Err(BindError::TooManyLookups)
    );
}

#[test]
fn s61_single_neg_dentry_falls_through_to_namers() {
    assert_eq!(
        bind_show("/$ => ~", "/$/inet/h/1"),
        Ok("/$/inet/h/1".into())
    );
    // Two ~ matches make Alt(~, ~): no fall-through.
    assert_eq!(bind_show("/$ => ~; /$ => ~", "/$/inet/h/1"), Ok("~".into()));
}

#[test]
fn s61_dtab_overrides_system_paths() {
    assert_eq!(
        bind_show("/$/inet/h/1 => /$/inet/other/2", "/$/inet/h/1"),
        Ok("/$/inet/other/2".into())
    );
    assert_eq!(bind_show("/$/fail => /$/nil", "/$/fail"), Ok("$".into()));
}

/// Namers with a configured namer at `/#/t`: `/#/t/pending` is pending,
/// `/#/t/rw/<x>` rewrites to the path `/<x>`, `/#/t/err` fails, `/#/t/b/<x>`
/// binds to the id `/#/t/b/<x>`; everything else goes to the system namers.
struct TestNamers;

impl Namers<SystemBound> for TestNamers {
    fn lookup(&mut self, path: &Path) -> NamerAnswer<SystemBound> {
        let s = path.to_string();
        if s.starts_with("/#/t/pending") {
            NamerAnswer::Pending
        } else if let Some(rest) = s.strip_prefix("/#/t/rw") {
            NamerAnswer::Tree(NameTree::Leaf(Name::Path(p(rest))))
        } else if s.starts_with("/#/t/err") {
            NamerAnswer::Error(format!("error naming {s}"))
        } else if s.starts_with("/#/t/b/") {
            NamerAnswer::Tree(NameTree::Leaf(Name::Bound(SystemBound {
                id: path.take(4),
                residual: path.drop(4),
            })))
        } else {
            system::system_answer(path)
        }
    }
}

fn bind_test(dtab: &str, path: &str) -> Result<String, BindError> {
    bind(&d(dtab), &p(path), &mut TestNamers).map(|t| t.to_string())
}

#[test]
fn s63_pending_and_namer_errors() {
    assert_eq!(bind_test("", "/#/t/pending"), Err(BindError::Pending));
    assert_eq!(
        bind_test("", "/#/t/err/x"),
        Err(BindError::Namer {
            path: p("/#/t/err/x"),
            message: "error naming /#/t/err/x".into()
        })
    );
    // A pending union member is left out while another is bound.
    assert_eq!(
        bind_test("/a => /#/t/pending & /#/t/b/x", "/a"),
        Ok("/#/t/b/x".into())
    );
    // ~ is a success too (Finagle: an Ok member), so the union is ~ then.
    assert_eq!(bind_test("/a => /#/t/pending & ~", "/a"), Ok("~".into()));
    assert_eq!(
        bind_test("/a => /#/t/pending & /#/t/pending/2", "/a"),
        Err(BindError::Pending)
    );
    // An error beats pending when nothing bound.
    assert_eq!(
        bind_test("/a => /#/t/pending & /#/t/err", "/a").map_err(|e| e.to_string()),
        Err("error naming /#/t/err".into())
    );
    // Pending inside Alt propagates.
    assert_eq!(
        bind_test("/a => /#/t/pending | /#/t/b/x", "/a"),
        Err(BindError::Pending)
    );
}

#[test]
fn s63_namer_paths_are_bound_through_the_dtab() {
    assert_eq!(
        bind_test("/y => /$/inet/h/9", "/#/t/rw/y/z"),
        Ok("/$/inet/h/9".into())
    );
}

#[test]
fn s63_bind_tree_binds_a_whole_tree() {
    let tree = t("/a | /b").map(&mut |p: &Path| Name::Path(p.clone()));
    let r = bind_tree(&d("/b => /$/inet/h/2"), &tree, &mut SystemNamers).unwrap();
    assert_eq!(show(&r), "/$/inet/h/2");
}

#[test]
fn s63_single_member_and_empty_nodes() {
    let as_names = |t: NameTree<Path>| t.map(&mut |p: &Path| Name::Path(p.clone()));
    let dt = d("/b => /$/inet/h/2");
    // Single-member Union binds its child directly, weight dropped.
    let u = NameTree::Union(vec![Weighted::new(3.0, t("/b"))]);
    let r = bind_tree(&dt, &as_names(u), &mut SystemNamers).unwrap();
    assert_eq!(show(&r), "/$/inet/h/2");
    // Single-member Alt likewise.
    let a = NameTree::Alt(vec![t("/b")]);
    let r = bind_tree(&dt, &as_names(a), &mut SystemNamers).unwrap();
    assert_eq!(show(&r), "/$/inet/h/2");
    // Empty Alt / Union are ~.
    for e in [NameTree::Alt(vec![]), NameTree::Union(vec![])] {
        let r = bind_tree(&dt, &as_names(e), &mut SystemNamers).unwrap();
        assert_eq!(r, NameTree::Neg);
    }
    // Constants bind to themselves.
    for c in ["!", "~", "$"] {
        let r = bind_tree(&dt, &as_names(t(c)), &mut SystemNamers).unwrap();
        assert_eq!(show(&r), c);
    }
}

#[test]
fn s63_union_members_bind_at_the_same_depth() {
    // 98 rewrites then a union of two system paths: each member is looked
    // up at depth 99, bound at depth 100: fine. One more level fails.
    let mk = |n: usize| {
        let mut s: Vec<String> = (0..n).map(|i| format!("/p{i} => /p{}", i + 1)).collect();
        s.push(format!("/p{n} => /$/inet/h/1 & /$/inet/h/2"));
        s.join(";")
    };
    assert_eq!(
        bind_show(&mk(98), "/p0"),
        Ok("/$/inet/h/1 & /$/inet/h/2".into())
    );
    // Every member fails with MaxDepth: the first error.
    assert_eq!(bind_show(&mk(99), "/p0"), Err(BindError::MaxDepth));
}

// ======================= §7 composition =======================

#[test]
fn s7_concat_later_wins() {
    let a = d("/a => /$/inet/h/1");
    let b = d("/a => /$/inet/h/2");
    assert_eq!(a.concat(&Dtab::empty()), a);
    assert_eq!(a.concat(&b).to_string(), "/a=>/$/inet/h/1;/a=>/$/inet/h/2");
    let r = bind(&a.concat(&b), &p("/a"), &mut SystemNamers).unwrap();
    assert_eq!(show(&r), "/$/inet/h/2");
    // The later one falls back to the earlier on ~.
    let c = d("/a => /nope");
    let r = bind(&a.concat(&c), &p("/a"), &mut SystemNamers).unwrap();
    assert_eq!(show(&r), "/$/inet/h/1");
}

// ======================= §8 (dtab side) =======================

#[test]
fn s8_ctx_then_user_concatenation_shows_like_linkerd() {
    let local = d("/a=>/b");
    let ctx = d("/a => /c");
    let user = d("/a => /d");
    assert_eq!(
        local.concat(&ctx.concat(&user)).to_string(),
        "/a=>/b;/a=>/c;/a=>/d"
    );
}

// ======================= §9 delegation trace =======================

mod delegation {
    use super::*;
    use switchyard::dtab::{
        AddrJson, AddressJson, BoundJson, DelegateError, DelegateTree, delegate, try_delegate,
    };

    /// The bound name of the worked example: inet ids with a fixed address.
    #[derive(Clone, Debug, PartialEq)]
    struct Fixed {
        id: Path,
        residual: Path,
    }

    impl BoundJson for Fixed {
        fn id(&self) -> &Path {
            &self.id
        }
        fn residual(&self) -> &Path {
            &self.residual
        }
        fn addr_json(&self) -> AddrJson {
            AddrJson::Bound(vec![AddressJson {
                ip: "127.0.0.1".into(),
                port: 8080,
                meta: Default::default(),
            }])
        }
    }

    /// Linkerd's DelegateApiHandlerTest namers: `/#/error/...` fails with
    /// "error naming <path>"; `/$/inet` is bound; `/#/pending` is pending.
    struct ExampleNamers;

    impl Namers<Fixed> for ExampleNamers {
        fn lookup(&mut self, path: &Path) -> NamerAnswer<Fixed> {
            let s = path.to_string();
            if s.starts_with("/#/error") {
                return NamerAnswer::Error(format!("error naming {s}"));
            }
            if s.starts_with("/#/pending") {
                return NamerAnswer::Pending;
            }
            match system::lookup(path) {
                SystemAnswer::Inet { id, residual, .. } => {
                    NamerAnswer::Tree(NameTree::Leaf(Name::Bound(Fixed { id, residual })))
                }
                SystemAnswer::Tree(t) => {
                    NamerAnswer::Tree(t.map(&mut |p: &Path| Name::Path(p.clone())))
                }
                SystemAnswer::Error(e) => NamerAnswer::Error(e),
                SystemAnswer::NotSystem => NamerAnswer::Tree(NameTree::Neg),
            }
        }
    }

    const DTAB: &str = "/beh=>/#/error; /bah/humbug=>/$/inet/127.1/8080; \
        /foo=>/bah | /beh | /$/fail; /foo=>/bar; /boo=>/foo; /meh=>/heh; /neg=>~";

    fn trace(dtab: &str, path: &str) -> DelegateTree<Fixed> {
        delegate(&d(dtab), &p(path), &mut ExampleNamers)
    }

    #[test]
    fn s9_worked_example_rendered() {
        let expected = "\
delegate /boo/humbug
  alt /foo/humbug  [/boo=>/foo]
    neg /bar/humbug  [/foo=>/bar]
    delegate /bah/humbug  [/foo=>/bah | /beh | /$/fail]
      leaf /$/inet/127.1/8080  [/bah/humbug=>/$/inet/127.1/8080]  bound id=/$/inet/127.1/8080 path=/
    delegate /beh/humbug  [/foo=>/bah | /beh | /$/fail]
      exception /#/error/humbug  [/beh=>/#/error]  \"error naming /#/error/humbug\"
    fail /$/fail/humbug  [/foo=>/bah | /beh | /$/fail]
";
        assert_eq!(trace(DTAB, "/boo/humbug").render(), expected);
    }

    #[test]
    fn s9_worked_example_json() {
        let json = serde_json::to_string(&trace(DTAB, "/boo/humbug")).unwrap();
        let expected = concat!(
            r#"{"type":"delegate","path":"/boo/humbug","delegate":{"#,
            r#""type":"alt","path":"/foo/humbug","dentry":{"prefix":"/boo","dst":"/foo"},"alt":["#,
            r#"{"type":"neg","path":"/bar/humbug","dentry":{"prefix":"/foo","dst":"/bar"}},"#,
            r#"{"type":"delegate","path":"/bah/humbug","#,
            r#""dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{"#,
            r#""type":"leaf","path":"/$/inet/127.1/8080","dentry":{"prefix":"/bah/humbug","#,
            r#""dst":"/$/inet/127.1/8080"},"#,
            r#""bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},"#,
            r#""id":"/$/inet/127.1/8080","path":"/"}}},"#,
            r#"{"type":"delegate","path":"/beh/humbug","#,
            r#""dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"},"delegate":{"#,
            r#""type":"exception","path":"/#/error/humbug","dentry":{"prefix":"/beh","dst":"/#/error"},"#,
            r#""message":"error naming /#/error/humbug"}},"#,
            r#"{"type":"fail","path":"/$/fail/humbug","#,
            r#""dentry":{"prefix":"/foo","dst":"/bah | /beh | /$/fail"}}]}}"#
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn s9_neg_paths() {
        assert_eq!(
            trace(DTAB, "/meh").render(),
            "delegate /meh\n  neg /heh  [/meh=>/heh]\n"
        );
        assert_eq!(
            trace(DTAB, "/neg").render(),
            "delegate /neg\n  neg ~  [/neg=>~]\n"
        );
        let json = serde_json::to_string(&trace(DTAB, "/neg")).unwrap();
        assert_eq!(
            json,
            r#"{"type":"delegate","path":"/neg","delegate":{"type":"neg","path":"~","dentry":{"prefix":"/neg","dst":"~"}}}"#
        );
        // No dentry and no namer: a bare neg at the path, no dentry.
        assert_eq!(trace("", "/nothing").render(), "neg /nothing\n");
    }

    #[test]
    fn s9_fail_path_is_bang_unless_system_fail() {
        assert_eq!(
            trace("/a => !", "/a").render(),
            "delegate /a\n  fail !  [/a=>!]\n"
        );
        assert_eq!(
            trace("/a => /$/fail", "/a/b").render(),
            "delegate /a/b\n  fail /$/fail/b  [/a=>/$/fail]\n"
        );
        assert_eq!(
            trace("/a => $", "/a").render(),
            "delegate /a\n  empty /a  [/a=>$]\n"
        );
    }

    #[test]
    fn s9_union_and_weights() {
        let t = trace("/a => 2*/$/inet/h/1 & /$/inet/h/2", "/a");
        assert_eq!(
            t.render(),
            // The Delegate at /a collapses into the Union at /a, which takes
            // the Delegate's (empty) dentry, as in Linkerd.
            "\
union /a
  2.00*leaf /$/inet/h/1  [/a=>2.00*/$/inet/h/1 & /$/inet/h/2]  bound id=/$/inet/h/1 path=/
  leaf /$/inet/h/2  [/a=>2.00*/$/inet/h/1 & /$/inet/h/2]  bound id=/$/inet/h/2 path=/
"
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["type"], "union");
        assert_eq!(json["union"][0]["weight"], 2.0);
        assert_eq!(json["union"][1]["weight"], 1.0);
        assert_eq!(json["union"][1]["tree"]["type"], "leaf");
    }

    #[test]
    fn s9_all_alt_branches_explored_unlike_bind() {
        // bind stops at the first branch; the trace shows both.
        let t = trace("/a => /$/inet/h/1 | /$/unknown", "/a");
        let r = t.render();
        assert!(r.contains("leaf /$/inet/h/1"), "{r}");
        assert!(
            r.contains("exception /$/unknown  [/a=>/$/inet/h/1 | /$/unknown]  \"Unknown namer: unknown for path: /$/unknown\""),
            "{r}"
        );
    }

    #[test]
    fn s9_depth_limit_message() {
        let t = trace("/s=>/s/srv", "/s");
        assert_eq!(
            t,
            DelegateTree::Exception {
                path: p("/s"),
                dentry: None,
                message: "Max recursion level reached.".into()
            }
        );
        // Inside an Alt the failure is held at the Alt, the rest shows.
        let t = trace("/x => /$/inet/h/1; /s => /s/srv | /x", "/s");
        let r = t.render();
        assert!(
            r.contains("[/s=>/s/srv | /x]  \"Max recursion level reached.\""),
            "{r}"
        );
        assert!(
            r.starts_with("alt /s\n  alt /s/srv  [/s=>/s/srv | /x]\n"),
            "{r}"
        );
        assert!(r.contains("leaf /$/inet/h/1"), "{r}");
    }

    #[test]
    fn s9_pending() {
        assert_eq!(
            try_delegate(&d("/a => /#/pending"), &p("/a"), &mut ExampleNamers),
            Err(DelegateError::Pending)
        );
    }

    #[test]
    fn s9_simplify_collapses_same_path_delegate_and_flattens_alts() {
        // A namer that rewrites to a path: Delegate(/x) -> Leaf at /x is
        // collapsed only when the paths agree.
        let path = p("/p");
        let leaf = |pt: &str| DelegateTree::Leaf {
            path: p(pt),
            dentry: None,
            bound: Fixed {
                id: p("/$/inet/h/1"),
                residual: Path::empty(),
            },
        };
        let de: Dentry = "/p => /q".parse().unwrap();
        let t = DelegateTree::Delegate {
            path: path.clone(),
            dentry: Some(de.clone()),
            child: Box::new(leaf("/p")),
        };
        assert_eq!(
            t.simplified(),
            DelegateTree::Leaf {
                path: path.clone(),
                dentry: Some(de.clone()),
                bound: Fixed {
                    id: p("/$/inet/h/1"),
                    residual: Path::empty()
                }
            }
        );
        // Not collapsed into a Neg/Fail/Empty even at the same path.
        let t = DelegateTree::<Fixed>::Delegate {
            path: path.clone(),
            dentry: None,
            child: Box::new(DelegateTree::Empty {
                path: path.clone(),
                dentry: Some(de.clone()),
            }),
        };
        assert_eq!(t.clone().simplified(), t);
        // Alt in an Alt at the same path is flattened; single-child Alt is a
        // Delegate; empty Alt/Union are Neg.
        let t = DelegateTree::Alt {
            path: path.clone(),
            dentry: None,
            children: vec![
                leaf("/a"),
                DelegateTree::Alt {
                    path: path.clone(),
                    dentry: Some(de.clone()),
                    children: vec![leaf("/b"), leaf("/c")],
                },
            ],
        };
        let DelegateTree::Alt { children, .. } = t.simplified() else {
            panic!()
        };
        assert_eq!(children.len(), 3);
        let t = DelegateTree::Alt {
            path: path.clone(),
            dentry: None,
            children: vec![leaf("/a")],
        };
        assert!(matches!(t.simplified(), DelegateTree::Delegate { .. }));
        let t = DelegateTree::<Fixed>::Union {
            path: path.clone(),
            dentry: None,
            children: vec![],
        };
        assert!(matches!(t.simplified(), DelegateTree::Neg { .. }));
    }

    #[test]
    fn s9_rewriting_namer_in_trace() {
        let t = delegate(
            &d("/svc => /$/io.buoyant.hostportPfx/inet; /inet => /$/inet"),
            &p("/svc/127.0.0.1:8080"),
            &mut SystemNamers,
        );
        assert_eq!(
            t.render(),
            "\
delegate /svc/127.0.0.1:8080
  delegate /inet/127.0.0.1/8080  [/svc=>/$/io.buoyant.hostportPfx/inet]
    leaf /$/inet/127.0.0.1/8080  [/inet=>/$/inet]  bound id=/$/inet/127.0.0.1/8080 path=/
"
        );
    }

    #[test]
    fn s9_fan_out_is_bounded() {
        let t = delegate(&d("/a => /a/x | /a/y"), &p("/a"), &mut SystemNamers);
        assert!(t.render().contains("lookups"));
    }

    #[test]
    fn s9_transformation_json_and_render() {
        let b = Fixed {
            id: p("/$/inet/127.0.0.1/4141"),
            residual: Path::empty(),
        };
        let t = DelegateTree::Transformation {
            path: p("/%/io.l5d.port/4141"),
            name: "io.l5d.port".into(),
            bound: b.clone(),
            child: Box::new(DelegateTree::Leaf {
                path: p("/$/inet/127.0.0.1/8080"),
                dentry: None,
                bound: b,
            }),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(
            json.starts_with(
                r#"{"type":"transformation","path":"/%/io.l5d.port/4141","name":"io.l5d.port","bound":{"addr":"#
            ),
            "{json}"
        );
        assert!(
            json.contains(r#","tree":{"type":"leaf","path":"/$/inet/127.0.0.1/8080","bound":"#),
            "{json}"
        );
        let r = t.render();
        assert!(r.starts_with("transformation /%/io.l5d.port/4141  io.l5d.port  bound id=/$/inet/127.0.0.1/4141 path=/\n  leaf "), "{r}");
    }

    #[test]
    fn s9_addr_json_forms() {
        let j = |a: AddrJson| serde_json::to_string(&a).unwrap();
        assert_eq!(j(AddrJson::Pending), r#"{"type":"pending"}"#);
        assert_eq!(j(AddrJson::Neg), r#"{"type":"neg"}"#);
        assert_eq!(
            j(AddrJson::Failed("boom".into())),
            r#"{"type":"failed","cause":"boom"}"#
        );
        assert_eq!(
            j(AddrJson::Bound(vec![])),
            r#"{"type":"bound","addrs":[],"meta":{}}"#
        );
    }

    #[test]
    fn s9_system_namers_trace() {
        let t = delegate(
            &d("/svc => /$/inet/127.0.0.1/8080"),
            &p("/svc/x"),
            &mut SystemNamers,
        );
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},"id":"/$/inet/127.0.0.1/8080","path":"/x"}"#), "{json}");
        let t = delegate(&d("/svc => /$/inet/web/80"), &p("/svc"), &mut SystemNamers);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains(r#""addr":{"type":"pending"}"#), "{json}");
    }
}

// ======================= robustness =======================

/// A dtab `/a => (/b | (/b | ... /$/inet/h/1))` nested `n` deep, built
/// without the parser (which stops near 390 levels).
fn nested_dtab(n: usize, union: bool) -> Dtab {
    let mut tree = NameTree::Leaf(p("/$/inet/h/1"));
    for _ in 0..n {
        tree = if union {
            NameTree::Union(vec![
                Weighted::new(1.0, NameTree::Leaf(p("/b"))),
                Weighted::new(1.0, tree),
            ])
        } else {
            NameTree::Alt(vec![NameTree::Leaf(p("/b")), tree])
        };
    }
    Dtab::new(vec![Dentry::new(p("/a").into(), tree)])
}

#[test]
fn deep_nesting_fits_a_2mib_thread() {
    for union in [false, true] {
        let dt = nested_dtab(385, union);
        let h = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let b = bind(&dt, &p("/a"), &mut SystemNamers).map(|t| t.to_string());
                let t = switchyard::dtab::delegate(&dt, &p("/a"), &mut SystemNamers);
                let json = serde_json::to_string(&t).map(|s| s.len()).unwrap_or(0);
                (b, json > 0, t.render().lines().count())
            })
            .unwrap();
        let (b, json, lines) = h.join().expect("no stack overflow");
        // Each /b is ~: it drops out of its union, its Alt falls through.
        assert_eq!(b, Ok("/$/inet/h/1".to_string()));
        assert!(json);
        assert!(lines > 385);
    }
}

#[test]
fn bind_nesting_is_bounded_and_fits_a_2mib_thread() {
    use switchyard::dtab::MAX_NESTING;
    let h = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            // Just under the limit: binds.
            let ok = bind(
                &nested_dtab(MAX_NESTING - 5, false),
                &p("/a"),
                &mut SystemNamers,
            );
            // Over it: a clean error, not a stack overflow.
            let deep = bind(
                &nested_dtab(MAX_NESTING + 5, true),
                &p("/a"),
                &mut SystemNamers,
            );
            // 100 rewrites, each nested 20 deep: over the limit too.
            let mut tree = NameTree::Leaf(p("/a/x"));
            for _ in 0..20 {
                tree = NameTree::Alt(vec![NameTree::Leaf(p("/nope")), tree]);
            }
            let dt = Dtab::new(vec![Dentry::new(p("/a").into(), tree)]);
            let hostile = bind(&dt, &p("/a"), &mut SystemNamers);
            (ok.map(|t| t.to_string()), deep, hostile)
        })
        .unwrap();
    let (ok, deep, hostile) = h.join().expect("no stack overflow");
    assert_eq!(ok, Ok("/$/inet/h/1".to_string()));
    assert_eq!(deep, Err(BindError::TooDeeplyNested));
    assert_eq!(hostile, Err(BindError::TooDeeplyNested));
}

#[test]
fn delegate_nesting_is_bounded_and_fits_a_2mib_thread() {
    use switchyard::dtab::DELEGATE_MAX_NESTING;
    for union in [false, true] {
        let h = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let dt = nested_dtab(DELEGATE_MAX_NESTING + 5, union);
                let t = switchyard::dtab::delegate(&dt, &p("/a"), &mut SystemNamers);
                let json = serde_json::to_string(&t).unwrap_or_default();
                (t.render(), json.len())
            })
            .unwrap();
        let (r, json) = h.join().expect("no stack overflow");
        assert!(
            r.contains("Name trees nested more than 400 levels deep"),
            "{}",
            &r[r.len().saturating_sub(300)..]
        );
        assert!(json > 0);
    }
}

#[test]
fn system_bound_socket_addr() {
    let sb = |id: &str| SystemBound {
        id: p(id),
        residual: Path::empty(),
    };
    assert_eq!(
        sb("/$/inet/127.0.0.1/8080").socket_addr(),
        Some("127.0.0.1:8080".parse().unwrap())
    );
    assert_eq!(
        sb("/$/inet/8080").socket_addr(),
        Some("0.0.0.0:8080".parse().unwrap())
    );
    assert_eq!(
        sb("/$/io.buoyant.rinet/80/10.0.0.1").socket_addr(),
        Some("10.0.0.1:80".parse().unwrap())
    );
    // Names need DNS; other ids are not addresses.
    assert_eq!(sb("/$/inet/web/80").socket_addr(), None);
    assert_eq!(sb("/#/io.l5d.fs/web").socket_addr(), None);
    assert_eq!(sb("/$/inet/h/80").to_string(), "/$/inet/h/80");
}
