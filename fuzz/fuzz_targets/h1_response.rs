//! HTTP/1.1 responses from an endpoint: decoding any bytes never panics,
//! and the outcome (head, body, trailers, reuse, or the error) does not
//! depend on how the bytes are cut into reads, nor on whether the header
//! lines are kept as sent or read into a map (the headers compared grouped
//! by name, as a map gives them). The first byte picks the request's
//! method (HEAD or GET) and the size of the pieces.
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use switchyard::client::h1_decode::{Decoded, decode, decode_verbatim};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let method = if pick & 0x80 != 0 { Method::HEAD } else { Method::GET };
    let piece = usize::from(pick & 0x3f) + 1;
    let whole = decode(data, &method, data.len());
    assert_eq!(decode(data, &method, piece), whole, "pieces of {piece}");
    assert_eq!(decode(data, &method, 1), whole, "pieces of 1");
    if let Ok(d) = &whole {
        assert!((100..1000).contains(&d.status));
    }
    let by_name = |mut d: Decoded| {
        d.headers.sort_by(|a, b| a.0.cmp(&b.0));
        d
    };
    let kept = decode_verbatim(data, &method, piece).map(by_name);
    assert_eq!(kept, whole.map(by_name), "lines kept, pieces of {piece}");
});
