//! HTTP/1.1 requests from a client: decoding any bytes never panics, and
//! the outcome (head, body, trailers, keep-alive, what follows, or the
//! error) does not depend on how the bytes are cut into reads. The first
//! byte picks the size of the pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::proxy::h1_decode::decode;

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
});
