//! Round robin: each eligible backend in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{Pick, Selector};
use crate::Backend;

#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selector for RoundRobin {
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| (pick.eligible)(&backends[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::selection::test_support::backends;

    #[test]
    fn visits_each_backend_in_turn() {
        let b = backends(3);
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..6)
            .map(|_| rr.select(&b, &Pick::any(0)).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn skips_ineligible_backends() {
        let b = backends(3);
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..4)
            .map(|_| {
                rr.select(
                    &b,
                    &Pick {
                        key: 0,
                        eligible: &|x| x.id() != b[1].id(),
                    },
                )
                .unwrap()
            })
            .collect();
        assert!(!picks.contains(&1));
        assert_eq!(
            rr.select(
                &b,
                &Pick {
                    key: 0,
                    eligible: &|_| false
                }
            ),
            None
        );
    }
}
