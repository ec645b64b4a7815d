//! Smooth weighted round robin, as nginx does it: every pick adds each
//! eligible backend's weight to its running weight, takes the largest, and
//! subtracts the total from the winner. Weights 5:1:1 give `a a b a c a a`,
//! not `a a a a a b c`: no backend gets a burst.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{Pick, Selector};
use crate::Backend;

#[derive(Default)]
pub struct WeightedRoundRobin {
    /// The running weights live on the backends; this makes one pick's
    /// read-modify-write of all of them atomic.
    lock: Mutex<()>,
}

impl Selector for WeightedRoundRobin {
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, b) in backends.iter().enumerate() {
            if !(pick.eligible)(b) {
                continue;
            }
            let weight = i64::from(b.weight);
            total += weight;
            let current = b.smooth_weight.fetch_add(weight, Ordering::Relaxed) + weight;
            if best.is_none_or(|(_, w)| current > w) {
                best = Some((i, current));
            }
        }
        let (chosen, _) = best?;
        backends[chosen]
            .smooth_weight
            .fetch_sub(total, Ordering::Relaxed);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(weights: &[u32]) -> Vec<Arc<Backend>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Backend::parse(&format!("http://127.0.0.1:{}={w}", 9000 + i)).unwrap())
            })
            .collect()
    }

    #[test]
    fn weights_5_1_1_interleave_smoothly_like_nginx() {
        let b = weighted(&[5, 1, 1]);
        let wrr = WeightedRoundRobin::default();
        let picks: String = (0..14)
            .map(|_| ["a", "b", "c"][wrr.select(&b, &Pick::any(0)).unwrap()])
            .collect();
        // nginx's documented sequence for 5:1:1, twice.
        assert_eq!(picks, "aabacaaaabacaa");
    }

    #[test]
    fn shares_follow_weights_and_skip_ineligible() {
        let b = weighted(&[3, 2, 1]);
        let wrr = WeightedRoundRobin::default();
        let mut seen = [0; 3];
        for _ in 0..600 {
            seen[wrr.select(&b, &Pick::any(0)).unwrap()] += 1;
        }
        assert_eq!(seen, [300, 200, 100]);
        let not_first = Pick {
            key: 0,
            eligible: &|x: &Backend| x.id() != b[0].id(),
        };
        let mut seen = [0; 3];
        for _ in 0..300 {
            seen[wrr.select(&b, &not_first).unwrap()] += 1;
        }
        assert_eq!(seen, [0, 200, 100]);
    }
}
