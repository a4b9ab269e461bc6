//! HTTP/1.1 requests from a client: decoding any bytes never panics, and
//! the outcome (head, body, trailers, keep-alive, what follows, or the
//! error) depends neither on how the bytes are cut into reads nor on
//! whether the header lines are kept as sent or read into a map (the
//! headers compared grouped by name, as a map gives them). The first byte
//! picks the size of the pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::proxy::h1_decode::{DecodedRequest, decode, decode_lines};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(pick & 0x3f) + 1;
    let whole = decode(data, data.len());
    assert_eq!(decode(data, piece), whole, "pieces of {piece}");
    assert_eq!(decode(data, 1), whole, "pieces of 1");
    if let Ok(d) = &whole {
        assert!(d.rest <= data.len());
        assert!(!d.headers.iter().any(|(n, _)| n == "transfer-encoding"));
    }
    let by_name = |mut d: DecodedRequest| {
        d.headers.sort_by(|a, b| a.0.cmp(&b.0));
        d
    };
    let kept = decode_lines(data, piece).map(by_name);
    assert_eq!(kept, whole.map(by_name), "lines kept, pieces of {piece}");
});
