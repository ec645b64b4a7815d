//! Least connections: the eligible backend with the fewest requests in flight
//! (recent fast refusals count too, see [`Backend::load`]); ties go round
//! robin so equal backends share the load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Pick, Selector};
use crate::Backend;

#[derive(Default)]
pub struct LeastConnections {
    tie_break: AtomicUsize,
}

impl Selector for LeastConnections {
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.tie_break.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| (pick.eligible)(&backends[i]))
            .min_by(|&a, &b| backends[a].load().total_cmp(&backends[b].load()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::selection::test_support::backends;

    #[test]
    fn picks_the_least_loaded_backend() {
        let b = backends(3);
        let _busy: Vec<_> = (0..5).map(|_| b[0].start_request()).collect();
        let _one = b[2].start_request();
        let lc = LeastConnections::default();
        for _ in 0..5 {
            assert_eq!(lc.select(&b, &Pick::any(0)), Some(1));
        }
    }

    #[test]
    fn fast_refusals_count_as_load() {
        let b = backends(2);
        // Backend 0 answers 429s at once: in flight it looks idle.
        for _ in 0..3 {
            b[0].record_refusal();
        }
        let _one = b[1].start_request();
        let lc = LeastConnections::default();
        for _ in 0..10 {
            assert_eq!(lc.select(&b, &Pick::any(0)), Some(1));
        }
    }

    #[test]
    fn spreads_ties() {
        let b = backends(3);
        let lc = LeastConnections::default();
        let mut seen = [0; 3];
        for _ in 0..30 {
            seen[lc.select(&b, &Pick::any(0)).unwrap()] += 1;
        }
        assert_eq!(seen, [10, 10, 10]);
    }
}
