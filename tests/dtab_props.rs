//! Properties of the dtab algebra: show then parse gives back the value, for
//! any path (including non-showable bytes), tree and dtab; `concat` keeps
//! order; the indexed lookup equals Finagle's plain reverse scan.

use proptest::prelude::*;
use switchyard::dtab::{Dentry, Dtab, Label, NameTree, Path, Prefix, PrefixElem, Weighted};

/// Labels: mostly showable text, sometimes arbitrary bytes (escaped on show).
fn label() -> impl Strategy<Value = Label> {
    prop_oneof![
        4 => "[a-zA-Z0-9_:.#$%-]{1,6}".prop_map(|s| s.into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 1..5),
    ]
    .prop_map(|b| Label::new(b).unwrap())
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(label(), 0..4).prop_map(Path::from_labels)
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop::collection::vec(
        prop_oneof![1 => Just(PrefixElem::Any), 3 => label().prop_map(PrefixElem::Label)],
        0..4,
    )
    .prop_map(Prefix::new)
}

/// Weights that show exactly: integers and two-decimal numbers.
fn weight() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..20).prop_map(f64::from),
        (0u32..1000).prop_map(|n| f64::from(n) / 100.0)
    ]
}

/// Trees as the parser produces them: Alt and Union have at least two members.
fn tree_with(leaf: BoxedStrategy<Path>) -> impl Strategy<Value = NameTree<Path>> {
    let base = prop_oneof![
        4 => leaf.prop_map(NameTree::Leaf),
        1 => Just(NameTree::Neg),
        1 => Just(NameTree::Fail),
        1 => Just(NameTree::Empty),
    ];
    base.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(NameTree::Alt),
            prop::collection::vec(
                (weight(), inner).prop_map(|(w, t)| Weighted::new(w, t)),
                2..4
            )
            .prop_map(NameTree::Union),
        ]
    })
}

fn tree() -> impl Strategy<Value = NameTree<Path>> {
    tree_with(path().boxed())
}

fn dtab() -> impl Strategy<Value = Dtab> {
    prop::collection::vec(
        (prefix(), tree()).prop_map(|(p, t)| Dentry::new(p, t)),
        0..5,
    )
    .prop_map(Dtab::new)
}

/// Small alphabets so that lookups often match, through several dentries.
fn small_label() -> impl Strategy<Value = Label> {
    prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|s| Label::new(s.as_bytes()).unwrap())
}

fn small_path() -> impl Strategy<Value = Path> {
    prop::collection::vec(small_label(), 0..4).prop_map(Path::from_labels)
}

fn small_dtab() -> impl Strategy<Value = Dtab> {
    let prefix = prop::collection::vec(
        prop_oneof![1 => Just(PrefixElem::Any), 3 => small_label().prop_map(PrefixElem::Label)],
        0..3,
    )
    .prop_map(Prefix::new);
    let tree = tree_with(small_path().boxed());
    prop::collection::vec((prefix, tree).prop_map(|(p, t)| Dentry::new(p, t)), 0..12)
        .prop_map(Dtab::new)
}

/// Finagle's `Dtab.lookup`, literally: scan every dentry, last first.
fn naive_lookup(dtab: &Dtab, path: &Path) -> NameTree<Path> {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn path_show_parse(p in path()) {
        let shown = p.to_string();
        prop_assert_eq!(shown.parse::<Path>().unwrap(), p, "{}", shown);
    }

    #[test]
    fn prefix_show_parse(p in prefix()) {
        let shown = p.to_string();
        prop_assert_eq!(shown.parse::<Prefix>().unwrap(), p, "{}", shown);
    }

    #[test]
    fn tree_show_parse(t in tree()) {
        let shown = t.to_string();
        prop_assert_eq!(shown.parse::<NameTree<Path>>().unwrap(), t, "{}", shown);
    }

    #[test]
    fn dentry_show_parse(p in prefix(), t in tree()) {
        let d = Dentry::new(p, t);
        let shown = d.to_string();
        prop_assert_eq!(shown.parse::<Dentry>().unwrap(), d, "{}", shown);
    }

    #[test]
    fn dtab_show_parse(d in dtab()) {
        let shown = d.to_string();
        prop_assert_eq!(shown.parse::<Dtab>().unwrap(), d.clone(), "{}", shown);
        prop_assert_eq!(Dtab::parse_all(&shown).unwrap(), d, "{}", shown);
    }

    #[test]
    fn concat_appends_in_order(a in small_dtab(), b in small_dtab(), c in small_dtab(), p in small_path()) {
        let ab = a.concat(&b);
        let expected: Vec<Dentry> = a.dentries().iter().chain(b.dentries()).cloned().collect();
        prop_assert_eq!(ab.dentries(), expected.as_slice());
        prop_assert_eq!(ab.concat(&c), a.concat(&b.concat(&c)));
        // `b`'s matches come before `a`'s.
        let got: Vec<NameTree<Path>> = ab.matches(&p).map(|(_, t)| t).collect();
        let want: Vec<NameTree<Path>> =
            b.matches(&p).chain(a.matches(&p)).map(|(_, t)| t).collect();
        prop_assert_eq!(got, want);
        // Shown, `a ++ b` is the two shows joined by ';'.
        let joined = [a.to_string(), b.to_string()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(";");
        prop_assert_eq!(ab.to_string(), joined);
    }

    #[test]
    fn indexed_lookup_equals_scan(d in small_dtab(), p in small_path()) {
        prop_assert_eq!(d.lookup(&p), naive_lookup(&d, &p));
    }

    #[test]
    fn indexed_lookup_equals_scan_any_bytes(d in dtab(), p in path()) {
        prop_assert_eq!(d.lookup(&p), naive_lookup(&d, &p));
    }

    #[test]
    fn dtab_like_text_parse_all_agrees(s in "((/[ab#*]{0,2}){1,2} ?(=>|=) ?(/[a#]|[0-9.]{1,3} ?\\*|[ ~!$|&()]|#[;a ]*\n){0,5}[;,]? ?){0,4}") {
        match (s.parse::<Dtab>(), Dtab::parse_all(&s)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(e), Err(es)) => prop_assert_eq!(e.summary(), es[0].summary()),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    #[test]
    fn parsing_never_panics(s in "[ -~\t\n]{0,40}") {
        // parse_all agrees with the one-error parser, and its first error is
        // the same error.
        match (s.parse::<Dtab>(), Dtab::parse_all(&s)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(e), Err(es)) => prop_assert_eq!(e.summary(), es[0].summary()),
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
        let _ = s.parse::<NameTree<Path>>();
        let _ = s.parse::<Path>();
    }
}
