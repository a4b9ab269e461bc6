//! The precise clock as the proxy runs it (the time-stamp counter; the
//! crate's own unit tests see tokio's clock instead): it agrees with
//! `CLOCK_MONOTONIC` across a sleep and never goes back.

use std::time::{Duration, Instant};

use switchyard::clock::{Precise, calibrate};

#[test]
fn the_precise_clock_agrees_with_the_monotonic_clock() {
    calibrate();
    for _ in 0..3 {
        let (p, s) = (Precise::now(), Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let (dp, ds) = (p.elapsed(), s.elapsed());
        assert!(dp >= Duration::from_millis(30), "{dp:?}");
        let diff = dp.abs_diff(ds);
        // Two readings apart, on a machine that may preempt between them.
        assert!(
            diff < Duration::from_millis(2),
            "precise {dp:?}, monotonic {ds:?}"
        );
    }
}

#[test]
fn the_precise_clock_never_goes_back() {
    let mut last = Precise::now();
    for _ in 0..100_000 {
        let now = Precise::now();
        assert!(now.since(last) < Duration::from_secs(1));
        assert_eq!(last.since(now), Duration::ZERO, "went back");
        last = now;
    }
}
