//! Paths and prefixes: parsing never panics, `parse` (lean rules first)
//! agrees with the precise rules alone, and show/parse is lossless;
//! any bytes make a path whose show form parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::dtab::{Label, Path, Prefix};

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes, cut at '/', as labels: show must escape what it must.
    let labels: Vec<Label> = data
        .split(|&b| b == b'/')
        .filter_map(|l| Label::new(l).ok())
        .collect();
    let built = Path::from_labels(labels);
    let shown = built.to_string();
    assert_eq!(shown.parse::<Path>().ok(), Some(built), "{shown:?}");

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = text.parse::<Path>();
    assert_eq!(parsed, switchyard::dtab::precise::path(text), "{text:?}");
    match parsed {
        Ok(p) => {
            let shown = p.to_string();
            assert_eq!(shown.parse::<Path>().ok(), Some(p), "{shown:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(p) = text.parse::<Prefix>() {
        let shown = p.to_string();
        assert_eq!(shown.parse::<Prefix>().ok(), Some(p), "{shown:?}");
    }
});
