//! The precise clock as the proxy runs it (the time-stamp counter; the
//! crate's own unit tests see tokio's clock instead): it agrees with
//! `CLOCK_MONOTONIC` across a sleep and never goes back.

use std::time::{Duration, Instant};

use switchyard::clock::{Precise, calibrate};

#[test]
fn the_precise_clock_agrees_with_the_monotonic_clock() {
    calibrate();
    // Each pair of readings is two calls apart; a busy machine may preempt
    // between them, so one try in five within 2 ms is agreement.
    let mut seen = Vec::new();
    let agreed = (0..5).any(|_| {
        let (p, s) = (Precise::now(), Instant::now());
        std::thread::sleep(Duration::from_millis(30));
        let (dp, ds) = (p.elapsed(), s.elapsed());
        assert!(dp >= Duration::from_millis(29), "{dp:?} for a 30 ms sleep");
        seen.push((dp, ds));
        dp.abs_diff(ds) < Duration::from_millis(2)
    });
    assert!(agreed, "precise against monotonic: {seen:?}");
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
