//! Backoff between a failed attempt and the next.

use std::time::Duration;

/// Exponential backoff with full jitter: the delay before attempt `n + 1` is drawn
/// uniformly from `[0, min(cap, base * 2^(n-1))]`, so many tasks failing together do
/// not all come back at the same instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

/// How a policy is shown and given: `{"base_ms": 1000, "cap_ms": 300000}`.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = RetryPolicy)]
pub(crate) struct Millis {
    base_ms: u64,
    cap_ms: u64,
}

/// The shape of a [`RetryPolicy`] in JSON, for the OpenAPI spec.
pub(crate) type RetryPolicyJson = Millis;

impl serde::Serialize for RetryPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Millis {
            base_ms: self.base.as_millis() as u64,
            cap_ms: self.cap.as_millis() as u64,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for RetryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = Millis::deserialize(d)?;
        Ok(RetryPolicy {
            base: Duration::from_millis(m.base_ms),
            cap: Duration::from_millis(m.cap_ms),
        })
    }
}

impl RetryPolicy {
    /// A policy from stored milliseconds; `None` unless both are there.
    pub fn from_millis(base_ms: Option<i64>, cap_ms: Option<i64>) -> Option<RetryPolicy> {
        match (base_ms, cap_ms) {
            (Some(b), Some(c)) if b > 0 && c >= b => Some(RetryPolicy {
                base: Duration::from_millis(b as u64),
                cap: Duration::from_millis(c as u64),
            }),
            _ => None,
        }
    }

    /// (base, cap) in milliseconds, for storing.
    pub fn to_millis(policy: Option<RetryPolicy>) -> (Option<i64>, Option<i64>) {
        match policy {
            Some(p) => (
                Some(p.base.as_millis() as i64),
                Some(p.cap.as_millis() as i64),
            ),
            None => (None, None),
        }
    }

    /// The ceiling of the delay after failed attempt number `attempt` (1-based).
    pub fn ceiling(&self, attempt: i32) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// The delay after failed attempt `attempt`, given a uniform sample in `[0, 1)`.
    pub fn delay(&self, attempt: i32, unit_sample: f64) -> Duration {
        self.ceiling(attempt).mul_f64(unit_sample.clamp(0.0, 1.0))
    }

    /// The delay after failed attempt `attempt` when the handler may have
    /// asked for one (`Retry-After`): the asked delay capped by the cap,
    /// else the jittered backoff.
    pub fn delay_or_asked(
        &self,
        attempt: i32,
        asked: Option<Duration>,
        unit_sample: f64,
    ) -> Duration {
        match asked {
            Some(asked) => asked.min(self.cap),
            None => self.delay(attempt, unit_sample),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_secs(1));
        assert_eq!(p.ceiling(1000), Duration::from_secs(1));
    }

    #[test]
    fn an_asked_delay_wins_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_secs(60),
        };
        let asked = p.delay_or_asked(1, Some(Duration::from_secs(30)), 0.5);
        assert_eq!(asked, Duration::from_secs(30));
        assert_eq!(
            p.delay_or_asked(1, Some(Duration::from_secs(3600)), 0.5),
            p.cap
        );
        assert_eq!(p.delay_or_asked(1, None, 0.5), Duration::from_millis(5));
    }

    #[test]
    fn delay_is_jittered_within_the_ceiling() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(2));
        assert!(p.delay(3, 0.999) < p.ceiling(3));
    }
}
