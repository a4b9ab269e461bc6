//! Name tree text: parsing never panics, `parse` (lean rules first) agrees
//! with the precise rules alone, and what parses re-parses from its
//! show form, to the same value after one round (show rounds weights to two
//! decimals).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::dtab::{NameTree, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = text.parse::<NameTree<Path>>();
    assert_eq!(parsed, switchyard::dtab::precise::tree(text), "{text:?}");
    let tree = match parsed {
        Ok(t) => t,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let shown = tree.to_string();
    let once: NameTree<Path> = shown
        .parse()
        .unwrap_or_else(|e| panic!("show form does not parse: {shown:?}: {e}"));
    let shown_again = once.to_string();
    let twice: NameTree<Path> = shown_again
        .parse()
        .unwrap_or_else(|e| panic!("show form does not parse: {shown_again:?}: {e}"));
    assert_eq!(once, twice, "{shown:?}");
    assert_eq!(shown_again, twice.to_string());
});
