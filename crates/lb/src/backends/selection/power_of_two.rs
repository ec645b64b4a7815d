//! Power of two choices: pick two eligible backends at random and send the
//! request to the one with fewer in flight. Nearly as good as least
//! connections at spreading load, without every balancer thread herding onto
//! the same "least" backend.

use std::sync::Arc;

use rand::Rng;

use super::{Pick, Selector};
use crate::Backend;

pub struct PowerOfTwoChoices;

/// Two distinct random eligible indices (one when only one is eligible).
pub(crate) fn two_random(backends: &[Arc<Backend>], pick: &Pick) -> Option<(usize, usize)> {
    let eligible: Vec<usize> = (0..backends.len())
        .filter(|&i| (pick.eligible)(&backends[i]))
        .collect();
    let mut rng = rand::thread_rng();
    match eligible.len() {
        0 => None,
        1 => Some((eligible[0], eligible[0])),
        n => {
            let a = rng.gen_range(0..n);
            let b = (a + rng.gen_range(1..n)) % n;
            Some((eligible[a], eligible[b]))
        }
    }
}

impl Selector for PowerOfTwoChoices {
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize> {
        let (a, b) = two_random(backends, pick)?;
        Some(if backends[b].load() < backends[a].load() {
            b
        } else {
            a
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::selection::test_support::backends;

    #[test]
    fn never_picks_the_most_loaded_of_three() {
        let b = backends(3);
        let _busy: Vec<_> = (0..10).map(|_| b[1].start_request()).collect();
        let _some: Vec<_> = (0..5).map(|_| b[2].start_request()).collect();
        let p2c = PowerOfTwoChoices;
        let mut seen = [0; 3];
        for _ in 0..3000 {
            seen[p2c.select(&b, &Pick::any(0)).unwrap()] += 1;
        }
        // Backend 1 loses every pairing; backend 0 wins each of its pairings.
        assert_eq!(seen[1], 0, "{seen:?}");
        assert!(seen[0] > 1700 && seen[2] > 700, "{seen:?}");
    }

    #[test]
    fn fast_refusals_count_as_load() {
        let b = backends(2);
        for _ in 0..5 {
            b[0].record_refusal();
        }
        let _one = b[1].start_request();
        for _ in 0..100 {
            assert_eq!(PowerOfTwoChoices.select(&b, &Pick::any(0)), Some(1));
        }
    }

    #[test]
    fn one_eligible_backend_is_chosen() {
        let b = backends(3);
        let only_last = Pick {
            key: 0,
            eligible: &|x: &Backend| x.id() == b[2].id(),
        };
        assert_eq!(PowerOfTwoChoices.select(&b, &only_last), Some(2));
    }
}
