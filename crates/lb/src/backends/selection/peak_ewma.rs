//! Peak EWMA (Finagle, Linkerd): two random picks, and the one with the lower
//! expected cost — its peak-sensitive moving average of response time times
//! (requests in flight + 1) — wins. A backend that turns slow is avoided at
//! once; one that refuses fast (429, or 503 with Retry-After) is charged a
//! penalty instead of looking fast ([`Backend::record_refusal`]).

use std::sync::Arc;

use super::power_of_two::two_random;
use super::{Pick, Selector};
use crate::Backend;

pub struct PeakEwma;

impl Selector for PeakEwma {
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize> {
        let (a, b) = two_random(backends, pick)?;
        Some(if backends[b].ewma_cost() < backends[a].ewma_cost() {
            b
        } else {
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backends::selection::test_support::backends;

    #[test]
    fn avoids_the_slow_backend() {
        let b = backends(3);
        b[0].record_latency(Duration::from_millis(2));
        b[1].record_latency(Duration::from_millis(200));
        b[2].record_latency(Duration::from_millis(3));
        let mut seen = [0; 3];
        for _ in 0..3000 {
            seen[PeakEwma.select(&b, &Pick::any(0)).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0, "{seen:?}");
    }

    #[test]
    fn a_fast_refusal_counts_as_load() {
        let b = backends(2);
        b[0].record_latency(Duration::from_millis(2));
        b[1].record_latency(Duration::from_millis(2));
        // Backend 1 answers 429 in 100 µs: without the penalty it would look fastest.
        b[1].record_latency(Duration::from_micros(100));
        b[1].record_refusal();
        for _ in 0..100 {
            assert_eq!(PeakEwma.select(&b, &Pick::any(0)), Some(0));
        }
    }

    #[test]
    fn peak_takes_over_then_decays_toward_faster_samples() {
        let b = backends(1);
        b[0].record_latency(Duration::from_millis(1));
        b[0].record_latency(Duration::from_millis(50));
        // The peak takes over at once (less what a few µs of decay take off).
        let peak = b[0].latency_ewma();
        assert!(
            peak > Duration::from_millis(49) && peak <= Duration::from_millis(50),
            "{peak:?}"
        );
        b[0].record_latency(Duration::from_millis(1));
        assert!(b[0].latency_ewma() <= Duration::from_millis(50));
    }
}

#[cfg(test)]
mod decay_tests {
    use std::time::Duration;

    use crate::backends::selection::test_support::backends;

    #[test]
    fn an_idle_backends_estimate_decays() {
        let b = backends(1);
        b[0].record_latency(Duration::from_millis(200));
        let before = b[0].latency_ewma();
        std::thread::sleep(Duration::from_millis(50));
        assert!(b[0].latency_ewma() < before);
    }
}
