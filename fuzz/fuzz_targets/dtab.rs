//! Dtab text: parsing never panics; `parse` (lean rules first) agrees with
//! the precise rules alone; `parse_all` agrees with `parse`; what
//! parses re-parses from its show form, to the same value after one round
//! (weights with more than two decimals are rounded by show); the indexed
//! lookup equals Finagle's plain scan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::dtab::{Dentry, Dtab, Label, NameTree, Path, PrefixElem};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = text.parse::<Dtab>();
    assert_eq!(parsed, switchyard::dtab::precise::dtab(text), "{text:?}");
    assert_eq!(
        text.parse::<Dentry>(),
        switchyard::dtab::precise::dentry(text),
        "{text:?}"
    );
    match (&parsed, Dtab::parse_all(text)) {
        (Ok(a), Ok(b)) => assert_eq!(*a, b),
        (Err(e), Err(es)) => {
            // `parse` reports the first syntax error (or, with none, the
            // first value error such as an infinite weight); `parse_all`
            // reports every error in text order, that one among them.
            assert!(
                es.iter().any(|x| x.summary() == e.summary()),
                "{} not in {:?}",
                e.summary(),
                es.iter().map(|x| x.summary()).collect::<Vec<_>>()
            );
            let _ = e.to_string();
        }
        (a, b) => panic!("parse and parse_all disagree: {a:?} vs {b:?}"),
    }
    let Ok(dtab) = parsed else {
        return;
    };
    let shown = dtab.to_string();
    let once: Dtab = shown
        .parse()
        .unwrap_or_else(|e| panic!("show form does not parse: {shown:?}: {e}"));
    let shown_again = once.to_string();
    let twice: Dtab = shown_again
        .parse()
        .unwrap_or_else(|e| panic!("show form does not parse: {shown_again:?}: {e}"));
    assert_eq!(once, twice, "{shown:?}");
    assert_eq!(shown_again, twice.to_string());

    // Look up paths made from the prefixes themselves (`*` read as a label),
    // with and without a residual.
    let any = Label::new(&b"any"[..]).expect("non-empty");
    for d in dtab.dentries().iter().take(16) {
        let labels: Vec<Label> = d
            .prefix
            .elems()
            .iter()
            .map(|e| match e {
                PrefixElem::Any => any.clone(),
                PrefixElem::Label(l) => l.clone(),
            })
            .collect();
        let path = Path::from_labels(labels);
        for p in [path.clone(), path.join(any.clone()), path.take(1)] {
            assert_eq!(dtab.lookup(&p), scan(&dtab, &p), "{shown:?} at {p}");
        }
    }
});

/// Finagle's `Dtab.lookup`, literally.
fn scan(dtab: &Dtab, path: &Path) -> NameTree<Path> {
    let mut ms: Vec<NameTree<Path>> = dtab
        .dentries()
        .iter()
        .rev()
        .filter(|d| d.prefix.matches(path))
        .map(|d| {
            let residual = path.drop(d.prefix.len());
            d.dst.map(&mut |l: &Path| l.concat(&residual))
        })
        .collect();
    match ms.len() {
        0 => NameTree::Neg,
        1 => ms.remove(0),
        _ => NameTree::Alt(ms),
    }
}
