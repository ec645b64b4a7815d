//! Claiming ahead of free slots, for tasks shorter than a claim.
//!
//! A slot that finishes a task waits a whole claim round trip for the next
//! one; when tasks take microseconds and a claim a millisecond, slots idle
//! most of the time (the remedy users found was `--worker-concurrency 32`).
//! So a worker keeps a few claimed tasks in hand — as many as its slots
//! finish during one claim — and starts them as slots free up.
//!
//! Tasks in hand are not running, so they must not be hoarded: none are
//! taken when tasks are long next to a claim, a running task older than the
//! average counts as the average (a queue that turned slow stops the
//! prefetch at once), and a task that waited in hand longer than
//! [`MAX_WAIT`] goes back to the queue for another worker.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use weir_core::ClaimedTask;

/// How long a claimed task may wait in hand for a free slot.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(50);
/// At most this many tasks in hand per slot.
const MAX_AHEAD_PER_SLOT: f64 = 4.0;
/// The weight of a new sample in the moving averages.
const SAMPLE_WEIGHT: f64 = 0.2;

/// Claimed tasks waiting for a slot, and the timings that size them.
#[derive(Default)]
pub(crate) struct Prefetch {
    waiting: VecDeque<(ClaimedTask, Instant)>,
    /// Moving averages, in seconds (0: no sample yet).
    claim_secs: f64,
    task_secs: f64,
}

fn average(current: f64, sample: Duration) -> f64 {
    let sample = sample.as_secs_f64();
    if current == 0.0 {
        sample
    } else {
        current + SAMPLE_WEIGHT * (sample - current)
    }
}

impl Prefetch {
    pub fn claim_took(&mut self, took: Duration) {
        self.claim_secs = average(self.claim_secs, took);
    }

    pub fn task_took(&mut self, took: Duration) {
        self.task_secs = average(self.task_secs, took);
    }

    /// How many tasks to hold beyond the `slots`, given the age of the
    /// oldest running task.
    pub fn ahead(&self, slots: usize, oldest_running: Duration) -> usize {
        let task = self.task_secs.max(oldest_running.as_secs_f64());
        if self.claim_secs == 0.0 || task == 0.0 {
            return 0;
        }
        let per_slot = (self.claim_secs / task).min(MAX_AHEAD_PER_SLOT);
        (slots as f64 * per_slot).floor() as usize
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn push(&mut self, task: ClaimedTask) {
        self.waiting.push_back((task, Instant::now()));
    }

    pub fn pop(&mut self) -> Option<ClaimedTask> {
        self.waiting.pop_front().map(|(task, _)| task)
    }

    /// When the longest-waiting task has waited too long.
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting.front().map(|(_, since)| *since + MAX_WAIT)
    }

    /// Takes the tasks that waited past [`MAX_WAIT`] (all of them when
    /// `all`), to hand back.
    pub fn take_stale(&mut self, all: bool) -> Vec<ClaimedTask> {
        let now = Instant::now();
        let mut stale = Vec::new();
        while let Some((_, since)) = self.waiting.front() {
            if !all && now < *since + MAX_WAIT {
                break;
            }
            stale.extend(self.waiting.pop_front().map(|(task, _)| task));
        }
        stale
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClaimedTask> {
        self.waiting.iter().map(|(task, _)| task)
    }

    /// Forgets the tasks for which `lost` holds (no longer leased to us).
    pub fn forget(&mut self, lost: impl Fn(&ClaimedTask) -> bool) {
        self.waiting.retain(|(task, _)| !lost(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tasks_shorter_than_a_claim_are_claimed_ahead() {
        let mut p = Prefetch::default();
        assert_eq!(p.ahead(4, Duration::ZERO), 0, "nothing known yet");
        p.claim_took(ms(2));
        p.task_took(ms(1));
        assert_eq!(p.ahead(4, Duration::ZERO), 8);
        for _ in 0..50 {
            p.task_took(Duration::from_micros(1));
        }
        assert_eq!(p.ahead(4, Duration::ZERO), 16, "capped per slot");
    }

    #[test]
    fn long_tasks_and_a_queue_turned_slow_take_none_ahead() {
        let mut p = Prefetch::default();
        p.claim_took(ms(2));
        p.task_took(ms(500));
        assert_eq!(p.ahead(4, Duration::ZERO), 0);
        let mut fast = Prefetch::default();
        fast.claim_took(ms(2));
        fast.task_took(Duration::from_micros(10));
        assert!(fast.ahead(4, Duration::ZERO) > 0);
        assert_eq!(fast.ahead(4, ms(100)), 0, "a running task is now slow");
    }
}
