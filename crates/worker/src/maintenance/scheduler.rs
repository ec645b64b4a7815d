//! Periodic jobs from config (cron expressions), queued by exactly one node.
//!
//! Every worker ticks the scheduler, but only the holder of the `scheduler`
//! leader lease queues anything. Each due slot becomes one task whose
//! idempotency key names the job and the slot, so even a leadership change
//! in the middle of a slot — two nodes briefly both believing they lead —
//! cannot queue it twice.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use weir_core::{LeaderAcquireParams, Store, TaskType, TaskTypes};
use weir_store::{Submission, Submitter};

/// How long a slot's idempotency key holds.
const SLOT_KEY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most slots one tick catches up on per job (after a long pause).
const MAX_CATCH_UP: usize = 100;

/// `NAME|CRON|TYPE|INPUT`: CRON has 5 fields (minute …) or 6 with seconds
/// first; INPUT is the task's JSON input (default `{}`).
#[derive(Clone, Debug)]
pub struct PeriodicJob {
    pub name: String,
    pub schedule: cron::Schedule,
    pub kind: TaskType,
    pub input: Value,
}

impl PeriodicJob {
    /// Checks the job's type is known and its input valid for it.
    pub fn check(&self, types: &TaskTypes) -> Result<(), String> {
        types
            .get(self.kind.as_str())
            .and_then(|t| t.validate_input(&self.input))
            .map_err(|e| format!("periodic job {}: {e}", self.name))
    }
}

impl FromStr for PeriodicJob {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(4, '|').map(str::trim).collect();
        let [name, cron_expr, kind, rest @ ..] = parts.as_slice() else {
            return Err(format!("expected NAME|CRON|TYPE|INPUT, got {s:?}"));
        };
        if name.is_empty() {
            return Err("a periodic job needs a name".into());
        }
        // Five fields is classic cron (minutes first); the parser wants seconds too.
        let expr = if cron_expr.split_whitespace().count() == 5 {
            format!("0 {cron_expr}")
        } else {
            cron_expr.to_string()
        };
        let schedule = cron::Schedule::from_str(&expr)
            .map_err(|e| format!("{name}: bad cron {cron_expr:?}: {e}"))?;
        let kind = TaskType::new(kind).map_err(|e| format!("{name}: {e}"))?;
        let input: Value = match rest.first() {
            Some(json) if !json.is_empty() => {
                serde_json::from_str(json).map_err(|e| format!("{name}: input: {e}"))?
            }
            _ => Value::Object(Default::default()),
        };
        Ok(PeriodicJob {
            name: name.to_string(),
            schedule,
            kind,
            input,
        })
    }
}

/// One worker's view of the schedule.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// Up to when slots were queued, while this worker has been the leader.
    queued_until: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// One tick: if this worker leads, queue every slot due since the last tick.
    pub async fn tick(
        &mut self,
        store: &Arc<dyn Store>,
        worker_id: &str,
        jobs: &[PeriodicJob],
        interval: Duration,
        types: &Arc<TaskTypes>,
    ) {
        if jobs.is_empty() {
            return;
        }
        let now = Utc::now();
        let submitter = Submitter::new(
            store.clone(),
            types.clone(),
            weir_core::DEFAULT_MAX_ATTEMPTS,
            SLOT_KEY_WINDOW,
        );
        let lease = LeaderAcquireParams {
            name: "scheduler".into(),
            holder: worker_id.to_string(),
            now,
            ttl: interval * 3,
        };
        match store.leader_acquire(lease).await {
            Ok(true) => {}
            Ok(false) => {
                self.queued_until = None;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler lease check failed");
                return;
            }
        }
        // A new leader looks back over the lease's length, so a slot that fell
        // between two leaders is not skipped (its key stops a double).
        let lookback = chrono::Duration::from_std(interval * 3).unwrap_or_default();
        let from = self.queued_until.unwrap_or(now - lookback);
        for job in jobs {
            for slot in job
                .schedule
                .after(&from)
                .take_while(|t| *t <= now)
                .take(MAX_CATCH_UP)
            {
                let mut submission = Submission::new(job.kind.as_str(), job.input.clone());
                submission.run_at = Some(slot);
                // The slot's key stops a second leader queueing it again.
                submission.idempotency_key =
                    Some(format!("periodic:{}:{}", job.name, slot.to_rfc3339()));
                if let Err(e) = submitter.submit(submission).await {
                    tracing::warn!(job = %job.name, error = %e, "periodic job not queued; next tick retries");
                    return;
                }
            }
        }
        self.queued_until = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jobs_with_five_or_six_field_cron() {
        let types = TaskTypes::default();
        let j: PeriodicJob = "nightly|30 2 * * *|noop|{}".parse().unwrap();
        assert_eq!((j.name.as_str(), j.kind.as_str()), ("nightly", "noop"));
        assert!(j.check(&types).is_ok());
        let every_second: PeriodicJob = "tick|* * * * * *|sleep|{\"ms\": 5}".parse().unwrap();
        assert_eq!(every_second.input["ms"], 5);
        assert!("x|not cron|noop".parse::<PeriodicJob>().is_err());
        let unknown: PeriodicJob = "x|* * * * *|nope".parse().unwrap();
        assert!(unknown
            .check(&types)
            .unwrap_err()
            .contains("unknown task type"));
        let bad_input: PeriodicJob = "x|* * * * *|sleep|{}".parse().unwrap();
        assert!(bad_input.check(&types).is_err(), "input is validated");
        assert!("|* * * * *|noop".parse::<PeriodicJob>().is_err());
    }
}
