//! `switchyard dtab|nametree|path` run as the real binary: stdout, stderr
//! and exit codes, on success and on error.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    {
        let mut sin = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            sin.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    stdout(o)
}

#[track_caller]
fn fails(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "stdout: {}", stdout(o));
    stderr(o)
}

const EXAMPLE: &str = "/beh=>/$/nope; /bah/humbug=>/$/inet/127.1/8080; \
    /foo=>/bah | /beh | /$/fail; /foo=>/bar; /boo=>/foo; /meh=>/heh; /neg=>~";

// ---- dtab fmt ----

#[test]
fn fmt_stdin_canonical_one_dentry_per_line() {
    let input = "# comment\n/svc=>/#/io.l5d.fs ;  /a/*/c => 2*/x & /y | ~ ; # c\n/b=>!;\n";
    let out = ok(&run(&["dtab", "fmt"], Some(input)));
    assert_eq!(
        out,
        "/svc => /#/io.l5d.fs;\n/a/*/c => 2.00*/x & /y | ~;\n/b => !;\n"
    );
    // Whitespace and the last ; removed: Finagle's Dtab.show.
    let squashed: String = out.chars().filter(|c| !c.is_whitespace()).collect();
    let show = "/svc=>/#/io.l5d.fs;/a/*/c=>2.00*/x&/y|~;/b=>!";
    assert_eq!(squashed.trim_end_matches(';'), show.replace(' ', ""));
    // And the dash means stdin too.
    assert_eq!(ok(&run(&["dtab", "fmt", "-"], Some(input))), out);
}

#[test]
fn fmt_file_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.dtab");
    std::fs::write(&f, "/a => /b | (/c | /d)\n").unwrap();
    let out = ok(&run(&["dtab", "fmt", f.to_str().unwrap()], None));
    assert_eq!(out, "/a => /b | (/c | /d);\n");
    assert_eq!(ok(&run(&["dtab", "fmt"], Some("  # nothing\n"))), "");
}

#[test]
fn fmt_errors_name_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.dtab");
    std::fs::write(&f, "/a => /b;\n/c = > /d;\n").unwrap();
    let name = f.to_str().unwrap();
    let err = fails(&run(&["dtab", "fmt", name], None));
    assert!(err.contains(&format!("{name}:2:4")), "{err}");
    assert!(err.contains("'=>'"), "{err}");
    assert!(err.contains("  | /c = > /d;"), "{err}");
    assert!(err.contains("^"), "{err}");
    let err = fails(&run(&["dtab", "fmt", "/does/not/exist.dtab"], None));
    assert!(err.contains("reading /does/not/exist.dtab"), "{err}");
}

// ---- dtab check ----

#[test]
fn check_reports_every_error_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.dtab");
    let bad = dir.path().join("bad.dtab");
    let bad2 = dir.path().join("bad2.dtab");
    std::fs::write(&good, "/a => /b;\n/c => /d;\n").unwrap();
    std::fs::write(&bad, "/a => ;\n/ok => /fine;\n/x = > /y;\n").unwrap();
    std::fs::write(&bad2, "/q => /r/;\n").unwrap();
    let (g, b, b2) = (
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
        bad2.to_str().unwrap(),
    );
    let o = run(&["dtab", "check", g, b, b2], None);
    let out = stdout(&o);
    let err = fails(&o);
    assert!(out.contains(&format!("{g}: ok (2 dentries)")), "{out}");
    assert!(!out.contains(b), "{out}");
    assert!(err.contains(&format!("{b}:1:")), "{err}");
    assert!(err.contains(&format!("{b}:3:")), "{err}");
    assert!(err.contains(&format!("{b2}:1:")), "{err}");
    assert!(err.contains("2 of 3 files failed"), "{err}");
}

#[test]
fn check_all_good_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.dtab");
    std::fs::write(&good, "").unwrap();
    let g = good.to_str().unwrap();
    assert_eq!(
        ok(&run(&["dtab", "check", g], None)),
        format!("{g}: ok (0 dentries)\n")
    );
    // A missing file is an error too.
    let err = fails(&run(&["dtab", "check", g, "/no/such/file"], None));
    assert!(err.contains("/no/such/file"), "{err}");
    // No file at all is a usage error (clap exits 2).
    assert_eq!(run(&["dtab", "check"], None).status.code(), Some(2));
}

// ---- dtab lookup ----

#[test]
fn lookup_is_one_unsimplified_step() {
    let dt = "/foo=>/bah | /beh | /$/fail; /foo=>/bar";
    assert_eq!(
        ok(&run(&["dtab", "lookup", "--dtab", dt, "/foo/humbug"], None)),
        "/bar/humbug | (/bah/humbug | /beh/humbug | /$/fail/humbug)\n"
    );
    assert_eq!(
        ok(&run(&["dtab", "lookup", "--dtab", dt, "/nothing"], None)),
        "~\n"
    );
    assert_eq!(
        ok(&run(
            &["dtab", "lookup", "--dtab", "/a/*/c => /d", "/a/b/c/e"],
            None
        )),
        "/d/e\n"
    );
    assert_eq!(ok(&run(&["dtab", "lookup", "/x"], None)), "~\n");
}

#[test]
fn lookup_dtab_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("d.dtab");
    std::fs::write(&f, "/svc => /srv;\n").unwrap();
    let arg = format!("@{}", f.to_str().unwrap());
    assert_eq!(
        ok(&run(&["dtab", "lookup", "--dtab", &arg, "/svc/web"], None)),
        "/srv/web\n"
    );
    let err = fails(&run(&["dtab", "lookup", "--dtab", "@/no/such", "/a"], None));
    assert!(err.contains("reading /no/such"), "{err}");
}

#[test]
fn lookup_parse_errors_are_full() {
    let err = fails(&run(&["dtab", "lookup", "--dtab", "/a => /b/", "/a"], None));
    assert!(err.contains("--dtab:1:"), "{err}");
    assert!(err.contains("  | /a => /b/"), "{err}");
    assert!(err.contains("^"), "{err}");
    let err = fails(&run(
        &["dtab", "lookup", "--dtab", "/a=>/b", "/foo^bar"],
        None,
    ));
    assert!(err.contains("PATH:1:5"), "{err}");
    assert!(err.contains("  | /foo^bar"), "{err}");
    assert!(err.contains("expected"), "{err}");
}

// ---- dtab bind ----

#[test]
fn bind_prints_bound_ids() {
    assert_eq!(
        ok(&run(
            &[
                "dtab",
                "bind",
                "--dtab",
                "/svc=>/$/inet/127.0.0.1/8080",
                "/svc/x"
            ],
            None
        )),
        "/$/inet/127.0.0.1/8080\n"
    );
    assert_eq!(
        ok(&run(
            &[
                "dtab",
                "bind",
                "--dtab",
                "/a => 2*/$/inet/h/1 & /$/inet/h/2 | /$/fail",
                "/a"
            ],
            None
        )),
        "2.00*/$/inet/h/1 & /$/inet/h/2\n"
    );
    assert_eq!(
        ok(&run(&["dtab", "bind", "--dtab", "/a => ~ | !", "/a"], None)),
        "!\n"
    );
    assert_eq!(ok(&run(&["dtab", "bind", "/nothing"], None)), "~\n");
}

#[test]
fn bind_errors_exit_one() {
    let err = fails(&run(&["dtab", "bind", "--dtab", "/s=>/s/srv", "/s"], None));
    assert!(
        err.contains("Max recursion level: 100 reached in Namer lookup"),
        "{err}"
    );
    let err = fails(&run(
        &["dtab", "bind", "--dtab", "/a=>/$/nope", "/a/b"],
        None,
    ));
    assert!(
        err.contains("Unknown namer: nope for path: /$/nope/b"),
        "{err}"
    );
    let err = fails(&run(&["dtab", "bind", "/$/inet"], None));
    assert!(err.contains("Unknown namer: inet"), "{err}");
    let err = fails(&run(&["dtab", "bind", "--dtab", ";", "/a"], None));
    assert!(err.contains("--dtab:1:1"), "{err}");
}

// ---- dtab explain ----

#[test]
fn explain_human_tree() {
    let out = ok(&run(
        &["dtab", "explain", "--dtab", EXAMPLE, "/boo/humbug"],
        None,
    ));
    assert_eq!(
        out,
        "\
delegate /boo/humbug
  alt /foo/humbug  [/boo=>/foo]
    neg /bar/humbug  [/foo=>/bar]
    delegate /bah/humbug  [/foo=>/bah | /beh | /$/fail]
      leaf /$/inet/127.1/8080  [/bah/humbug=>/$/inet/127.1/8080]  bound id=/$/inet/127.1/8080 path=/
    delegate /beh/humbug  [/foo=>/bah | /beh | /$/fail]
      exception /$/nope/humbug  [/beh=>/$/nope]  \"Unknown namer: nope for path: /$/nope/humbug\"
    fail /$/fail/humbug  [/foo=>/bah | /beh | /$/fail]
"
    );
    assert_eq!(
        ok(&run(&["dtab", "explain", "--dtab", EXAMPLE, "/neg"], None)),
        "delegate /neg\n  neg ~  [/neg=>~]\n"
    );
}

#[test]
fn explain_json() {
    let out = ok(&run(
        &[
            "dtab",
            "explain",
            "--json",
            "--dtab",
            "/svc=>/$/inet/127.0.0.1/8080",
            "/svc/x",
        ],
        None,
    ));
    assert_eq!(
        out.trim_end(),
        concat!(
            r#"{"type":"delegate","path":"/svc/x","delegate":{"type":"leaf","#,
            r#""path":"/$/inet/127.0.0.1/8080/x","dentry":{"prefix":"/svc","dst":"/$/inet/127.0.0.1/8080"},"#,
            r#""bound":{"addr":{"type":"bound","addrs":[{"ip":"127.0.0.1","port":8080,"meta":{}}],"meta":{}},"#,
            r#""id":"/$/inet/127.0.0.1/8080","path":"/x"}}}"#
        )
    );
    let v: serde_json::Value = serde_json::from_str(&ok(&run(
        &[
            "dtab",
            "explain",
            "--json",
            "--dtab",
            EXAMPLE,
            "/boo/humbug",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(v["delegate"]["type"], "alt");
    assert_eq!(v["delegate"]["alt"][2]["delegate"]["type"], "exception");
}

#[test]
fn explain_errors() {
    // A depth failure is a trace too (an exception node), not an error.
    let out = ok(&run(
        &["dtab", "explain", "--dtab", "/s=>/s/srv", "/s"],
        None,
    ));
    assert_eq!(out, "exception /s  \"Max recursion level reached.\"\n");
    let err = fails(&run(&["dtab", "explain", "--dtab", "/a=>", "/a"], None));
    assert!(err.contains("--dtab:1:5"), "{err}");
    let err = fails(&run(&["dtab", "explain", "relative"], None));
    assert!(err.contains("PATH:1:1"), "{err}");
}

// ---- nametree fmt / path fmt ----

#[test]
fn nametree_fmt() {
    assert_eq!(
        ok(&run(&["nametree", "fmt"], Some(" /a | ( /b&2*/c ) # c\n"))),
        "/a | /b & 2.00*/c\n"
    );
    assert_eq!(ok(&run(&["nametree", "fmt", "-"], Some("((/a))"))), "/a\n");
    let err = fails(&run(&["nametree", "fmt"], Some("/a | | /b\n")));
    assert!(err.contains("<stdin>:1:"), "{err}");
    assert!(err.contains("  | /a | | /b"), "{err}");
    let err = fails(&run(&["nametree", "fmt"], Some("")));
    assert!(err.contains("<stdin>:1:1"), "{err}");
}

#[test]
fn path_fmt() {
    assert_eq!(
        ok(&run(&["path", "fmt"], Some("/a/\\x66oo/\\x61\\x20b\n"))),
        "/a/foo/\\x61\\x20\\x62\n"
    );
    assert_eq!(ok(&run(&["path", "fmt"], Some("/"))), "/\n");
    let err = fails(&run(&["path", "fmt"], Some("/foo/bar/")));
    assert!(err.contains("<stdin>:1:10"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.txt");
    std::fs::write(&f, "/x/y\n").unwrap();
    assert_eq!(
        ok(&run(&["path", "fmt", f.to_str().unwrap()], None)),
        "/x/y\n"
    );
}
