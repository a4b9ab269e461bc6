//! The dtab files shipped in `dtabs/`: every example parses and survives a
//! show/parse round trip; every file in `dtabs/invalid` fails with exactly
//! the errors its `# expect: LINE:COL: MESSAGE` header lines announce (one
//! line per error, in order; the first is also what a plain parse reports).

use std::fs;
use std::path::{Path as FsPath, PathBuf};

use switchyard::dtab::{Dtab, ParseError};

fn dtab_files(dir: &str) -> Vec<PathBuf> {
    let dir = FsPath::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dtab"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .dtab files in {}", dir.display());
    files
}

fn read(p: &FsPath) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn default_dtab_is_the_fs_namer() {
    let text = read(&FsPath::new(env!("CARGO_MANIFEST_DIR")).join("dtabs/default.dtab"));
    assert_eq!(text.trim_end(), "/svc => /#/io.l5d.fs;");
    assert_eq!(
        text.parse::<Dtab>().unwrap().to_string(),
        "/svc=>/#/io.l5d.fs"
    );
}

#[test]
fn examples_parse_and_round_trip() {
    for f in dtab_files("dtabs/examples") {
        let text = read(&f);
        let d = match Dtab::parse_all(&text) {
            Ok(d) => d,
            Err(es) => panic!(
                "{}:\n{}",
                f.display(),
                es.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        assert!(!d.is_empty(), "{}: no dentries", f.display());
        let shown = d.to_string();
        let again: Dtab = shown
            .parse()
            .unwrap_or_else(|e| panic!("{}: show does not re-parse: {e}", f.display()));
        assert_eq!(again, d, "{}", f.display());
        assert_eq!(again.to_string(), shown, "{}", f.display());
    }
}

fn expectations(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .collect()
}

#[test]
fn invalid_files_fail_with_their_expected_messages() {
    let mut mismatches = Vec::new();
    for f in dtab_files("dtabs/invalid") {
        let text = read(&f);
        let want = expectations(&text);
        assert!(!want.is_empty(), "{}: no '# expect: ' line", f.display());
        let errors = match Dtab::parse_all(&text) {
            Ok(d) => panic!("{}: parsed as {d}", f.display()),
            Err(es) => es,
        };
        let got: Vec<String> = errors.iter().map(ParseError::summary).collect();
        let first = text.parse::<Dtab>().map(|_| ()).unwrap_err().summary();
        if got != want || first != want[0] {
            mismatches.push(format!(
                "{}:\n  want {want:#?}\n  got  {got:#?}\n  plain parse: {first}",
                f.display()
            ));
        }
        // The message names the file when told to.
        let named = errors[0].clone().with_source(f.display().to_string());
        assert!(named.to_string().starts_with(&format!("{}:", f.display())));
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
