//! A Jepsen-style set checker: clients record what they added and how each
//! addition ended; at the end, what the store holds is checked against that
//! history.
//!
//! An element acknowledged (weir answered 202) must be stored exactly once.
//! An element whose addition ended any other way (503, timeout, reset) is
//! indeterminate: the write may or may not have happened, so it may be
//! stored once or not at all — never twice. Nothing may be stored that no
//! client tried to add.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;

/// What clients tried to add, as they go (shared between client tasks).
#[derive(Default)]
pub struct SetHistory {
    inner: Mutex<Outcomes>,
}

#[derive(Default)]
struct Outcomes {
    acknowledged: HashSet<String>,
    indeterminate: HashSet<String>,
}

impl SetHistory {
    /// `id` was acknowledged: it must be stored exactly once.
    pub fn acknowledged(&self, id: impl Into<String>) {
        let mut o = self.inner.lock().unwrap();
        let id = id.into();
        o.indeterminate.remove(&id);
        o.acknowledged.insert(id);
    }

    /// Adding `id` ended without an acknowledgement.
    pub fn indeterminate(&self, id: impl Into<String>) {
        let mut o = self.inner.lock().unwrap();
        let id = id.into();
        if !o.acknowledged.contains(&id) {
            o.indeterminate.insert(id);
        }
    }

    /// How many were acknowledged so far.
    pub fn acknowledged_count(&self) -> usize {
        self.inner.lock().unwrap().acknowledged.len()
    }

    /// The acknowledged elements.
    pub fn acknowledged_ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .acknowledged
            .iter()
            .cloned()
            .collect()
    }

    /// Checks `stored` (every element the store holds, repeats included).
    pub fn check(&self, stored: impl IntoIterator<Item = String>) -> SetVerdict {
        let o = self.inner.lock().unwrap();
        let mut copies: HashMap<String, usize> = HashMap::new();
        for id in stored {
            *copies.entry(id).or_default() += 1;
        }
        let mut verdict = SetVerdict {
            acknowledged: o.acknowledged.len(),
            indeterminate: o.indeterminate.len(),
            ..SetVerdict::default()
        };
        for id in &o.acknowledged {
            if !copies.contains_key(id) {
                verdict.lost.push(id.clone());
            }
        }
        for (id, n) in copies {
            if n > 1 {
                verdict.duplicated.push((id.clone(), n));
            }
            if o.indeterminate.contains(&id) {
                verdict.indeterminate_stored += 1;
            } else if !o.acknowledged.contains(&id) {
                verdict.unexpected.push(id);
            }
        }
        verdict
    }
}

/// The outcome of [`SetHistory::check`].
#[derive(Debug, Default)]
pub struct SetVerdict {
    pub acknowledged: usize,
    pub indeterminate: usize,
    /// Indeterminate elements the store holds (allowed).
    pub indeterminate_stored: usize,
    /// Acknowledged but not stored.
    pub lost: Vec<String>,
    /// Stored more than once, with the number of copies.
    pub duplicated: Vec<(String, usize)>,
    /// Stored although no client added it.
    pub unexpected: Vec<String>,
}

impl SetVerdict {
    /// Nothing lost, nothing twice, nothing from nowhere.
    pub fn valid(&self) -> bool {
        self.lost.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for SetVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged, {} indeterminate ({} of them stored), {} lost {:?}, \
             {} duplicated {:?}, {} unexpected {:?}",
            self.acknowledged,
            self.indeterminate,
            self.indeterminate_stored,
            self.lost.len(),
            self.lost.iter().take(5).collect::<Vec<_>>(),
            self.duplicated.len(),
            self.duplicated.iter().take(5).collect::<Vec<_>>(),
            self.unexpected.len(),
            self.unexpected.iter().take(5).collect::<Vec<_>>(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_lost_duplicated_and_unexpected_elements() {
        let h = SetHistory::default();
        for id in ["a", "b", "c"] {
            h.acknowledged(id);
        }
        h.indeterminate("x");
        h.indeterminate("y");
        let ok = h.check(ids(&["a", "b", "c", "x"]));
        assert!(ok.valid(), "{ok}");
        assert_eq!(ok.indeterminate_stored, 1);

        let bad = h.check(ids(&["a", "a", "c", "y", "y", "z"]));
        assert!(!bad.valid());
        assert_eq!(bad.lost, ids(&["b"]));
        let mut dup = bad.duplicated.clone();
        dup.sort();
        assert_eq!(dup, vec![("a".to_string(), 2), ("y".to_string(), 2)]);
        assert_eq!(bad.unexpected, ids(&["z"]));
    }

    #[test]
    fn a_later_acknowledgement_settles_an_indeterminate_one() {
        let h = SetHistory::default();
        h.indeterminate("a");
        h.acknowledged("a");
        h.indeterminate("a");
        let v = h.check(Vec::new());
        assert_eq!(v.lost, ids(&["a"]));
        assert_eq!(v.indeterminate, 0);
    }
}
