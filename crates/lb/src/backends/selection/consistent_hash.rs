//! Consistent hashing by rendezvous (highest random weight): each eligible
//! backend scores `hash(key, backend id)` and the highest score wins. The same
//! key always lands on the same backend while it is eligible; when one of n
//! backends leaves, only the keys it held move (about 1/n), and they spread
//! over the rest. Weights scale a backend's share (weighted rendezvous). No
//! ring to rebuild when backends change, so the set can be swapped freely.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use super::{Pick, Selector};
use crate::Backend;

pub struct ConsistentHash;

/// A key's score on one backend: weight / -ln(u), u uniform in (0, 1).
fn score(key: u64, backend: &Backend) -> f64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    backend.id().hash(&mut h);
    // 53 random bits → (0, 1), never 0.
    let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(backend.weight) / -u.ln()
}

impl Selector for ConsistentHash {
    fn select(&self, backends: &[Arc<Backend>], pick: &Pick) -> Option<usize> {
        (0..backends.len())
            .filter(|&i| (pick.eligible)(&backends[i]))
            .max_by(|&a, &b| {
                score(pick.key, &backends[a]).total_cmp(&score(pick.key, &backends[b]))
            })
    }
}

/// Hashes an affinity key (a client IP, a header value) for [`Pick::key`].
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::selection::test_support::backends;

    #[test]
    fn same_key_same_backend() {
        let b = backends(5);
        for key in 0..200u64 {
            let first = ConsistentHash.select(&b, &Pick::any(key));
            for _ in 0..3 {
                assert_eq!(ConsistentHash.select(&b, &Pick::any(key)), first);
            }
        }
    }

    #[test]
    fn a_leaving_backend_moves_only_its_keys() {
        let n = 5;
        let b = backends(n);
        let keys: Vec<u64> = (0..10_000u64).map(|k| hash_key(&k.to_le_bytes())).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|&k| ConsistentHash.select(&b, &Pick::any(k)).unwrap())
            .collect();
        // Backend 2 leaves.
        let without = Pick {
            key: 0,
            eligible: &|x: &Backend| x.id() != b[2].id(),
        };
        let mut moved = 0;
        for (k, was) in keys.iter().zip(&before) {
            let now = ConsistentHash
                .select(
                    &b,
                    &Pick {
                        key: *k,
                        eligible: without.eligible,
                    },
                )
                .unwrap();
            if now != *was {
                // Only keys that were on the departed backend may move.
                assert_eq!(*was, 2);
                moved += 1;
            }
        }
        // About 1/n of the keys, and spread evenly before.
        let share = moved as f64 / keys.len() as f64;
        assert!((share - 1.0 / n as f64).abs() < 0.03, "moved {share}");
    }

    #[test]
    fn weights_scale_shares() {
        let b: Vec<Arc<Backend>> = ["http://127.0.0.1:9000=3", "http://127.0.0.1:9001=1"]
            .iter()
            .map(|s| Arc::new(Backend::parse(s).unwrap()))
            .collect();
        let on_first = (0..20_000u64)
            .filter(|k| {
                ConsistentHash.select(&b, &Pick::any(hash_key(&k.to_le_bytes()))) == Some(0)
            })
            .count();
        let share = on_first as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }
}
