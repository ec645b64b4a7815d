//! The producer side of buffered ingest: an API node appends each accepted
//! batch to a Redis Stream as one entry, and answers 202 once Redis has it.
//!
//! The stream is bounded without ever dropping an entry: consumers delete
//! entries once they are committed to the database, so the stream's length is
//! the backlog, and an append that would grow it past `max_len` is refused
//! (the API answers 503 with Retry-After). The check and the append are one
//! Lua script, so concurrent API nodes cannot overshoot together.

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use weir_core::NewEvent;

use crate::IngestError;

/// Appends the entry unless the stream already holds `ARGV[1]` entries.
const APPEND_SCRIPT: &str = r"
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return false
end
return redis.call('XADD', KEYS[1], '*', 'events', ARGV[2])
";

/// The field each stream entry keeps its batch in.
pub(crate) const EVENTS_FIELD: &str = "events";

/// A handle to the stream, cheap to clone.
#[derive(Clone)]
pub struct EventBuffer {
    conn: ConnectionManager,
    stream: String,
    max_len: u64,
    script: redis::Script,
    /// Longest an append waits for Redis.
    budget: std::time::Duration,
    /// Each append waits until Redis has synced it to its AOF.
    wait_aof: bool,
}

impl EventBuffer {
    /// Connects to Redis at `url`; the stream is created by the first append.
    pub async fn connect(url: &str, stream: &str, max_len: u64) -> Result<Self, IngestError> {
        let conn = crate::connect(url).await?;
        Ok(EventBuffer {
            conn,
            stream: stream.to_owned(),
            max_len: max_len.max(1),
            script: redis::Script::new(APPEND_SCRIPT),
            budget: crate::RESPONSE_TIMEOUT,
            wait_aof: false,
        })
    }

    /// The same buffer, whose appends are answered only once Redis has
    /// synced them to its append-only file (`WAITAOF 1 0`): a 202 then
    /// survives a power loss of the Redis machine. Refused unless Redis is
    /// 7.2 or later and runs with `appendonly yes`.
    pub async fn waiting_for_aof(mut self) -> Result<Self, IngestError> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(IngestError::from_redis)?;
        let version = info_field(&info, "redis_version").unwrap_or_default();
        if !at_least(&version, (7, 2)) {
            return Err(IngestError::Unsupported(format!(
                "--ingest-wait-aof needs Redis 7.2 or later (WAITAOF); this Redis is {version}"
            )));
        }
        let appendonly: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendonly")
            .query_async(&mut conn)
            .await
            .map_err(IngestError::from_redis)?;
        if appendonly.get(1).map(String::as_str) != Some("yes") {
            return Err(IngestError::Unsupported(
                "--ingest-wait-aof needs Redis to run with appendonly yes".into(),
            ));
        }
        self.wait_aof = true;
        Ok(self)
    }

    /// The same buffer, whose appends give up after `budget` (an API node's
    /// database budget): a request never waits on a stalled Redis for longer.
    pub fn within(mut self, budget: std::time::Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Appends one request's events as one entry. `Err(Full)` when the
    /// backlog is at its bound; nothing was appended then.
    pub async fn append(&self, events: &[NewEvent]) -> Result<(), IngestError> {
        let entry = encode(events);
        let mut conn = self.conn.clone();
        let mut call = self.script.key(&self.stream);
        call.arg(self.max_len).arg(entry);
        let id: Option<String> = tokio::time::timeout(self.budget, call.invoke_async(&mut conn))
            .await
            .map_err(|_| IngestError::Redis(format!("no answer within {:?}", self.budget)))?
            .map_err(IngestError::from_redis)?;
        if id.is_none() {
            return Err(IngestError::Full {
                max_len: self.max_len,
            });
        }
        if self.wait_aof {
            // Covers every write this connection sent before it, ours included.
            let timeout_ms = self.budget.as_millis().max(1) as u64;
            let (local, _replicas): (i64, i64) = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(timeout_ms)
                .query_async(&mut conn)
                .await
                .map_err(IngestError::from_redis)?;
            if local < 1 {
                return Err(IngestError::Redis(format!(
                    "the batch was not synced to Redis's append-only file within {:?}",
                    self.budget
                )));
            }
        }
        Ok(())
    }

    /// What a 202 does not survive under Redis's persistence settings (as
    /// Redis's documentation describes them), as one line; `None` when
    /// every acknowledged entry is on disk before Redis answers, or the
    /// settings cannot be read (`CONFIG` renamed away, as managed Redis
    /// services do).
    pub async fn persistence_warning(&self) -> Option<String> {
        let get = |name: &'static str| {
            let mut conn = self.conn.clone();
            async move {
                let pair: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                pair.get(1).cloned()
            }
        };
        let appendonly = get("appendonly").await?;
        let appendfsync = get("appendfsync").await?;
        persistence_risk(&appendonly, &appendfsync)
    }

    /// Entries waiting in the stream (appended, not yet committed).
    pub async fn backlog(&self) -> Result<u64, IngestError> {
        let mut conn = self.conn.clone();
        redis::cmd("XLEN")
            .arg(&self.stream)
            .query_async(&mut conn)
            .await
            .map_err(IngestError::from_redis)
    }
}

/// A `field:value` line of Redis's `INFO` text.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// Whether a version like `7.0.15` is at least `(major, minor)`.
fn at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= (major, minor)
}

/// What buffered ingest's 202 does not survive under these settings.
fn persistence_risk(appendonly: &str, appendfsync: &str) -> Option<String> {
    let lost = "events acknowledged with 202 and not yet written to the database";
    match (appendonly, appendfsync) {
        ("no", _) => Some(format!(
            "Redis runs with appendonly no: {lost} are lost when Redis restarts or crashes \
             (snapshots keep only what was in the last one)"
        )),
        (_, "everysec") => Some(format!(
            "Redis runs with appendfsync everysec: up to a second of {lost} may be lost on a \
             power loss or an OS crash (a Redis crash alone loses none)"
        )),
        (_, "no") => Some(format!(
            "Redis runs with appendfsync no: {lost} may be lost on a power loss or an OS crash \
             (the OS syncs when it likes, typically every 30 s)"
        )),
        _ => None,
    }
}

/// One entry's text: `[{"id":…,"at":micros,"body":{…}},…]`. Bodies are
/// already-validated JSON objects, so they are written as they are.
pub(crate) fn encode(events: &[NewEvent]) -> String {
    let size: usize = events.iter().map(|e| e.body.len() + e.id.len() + 48).sum();
    let mut out = String::with_capacity(size + 2);
    out.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        // A string's JSON encoding cannot fail.
        out.push_str(&serde_json::to_string(&e.id).unwrap_or_default());
        out.push_str(",\"at\":");
        out.push_str(&e.received_at.timestamp_micros().to_string());
        out.push_str(",\"body\":");
        out.push_str(&e.body);
        out.push('}');
    }
    out.push(']');
    out
}

#[derive(serde::Deserialize)]
struct WireEvent {
    id: String,
    at: i64,
    body: Box<serde_json::value::RawValue>,
}

/// The events of one entry, as [`encode`] wrote them.
pub(crate) fn decode(entry: &[u8]) -> Result<Vec<NewEvent>, String> {
    let wire: Vec<WireEvent> = serde_json::from_slice(entry).map_err(|e| e.to_string())?;
    wire.into_iter()
        .map(|w| {
            let received_at = DateTime::<Utc>::from_timestamp_micros(w.at)
                .ok_or_else(|| format!("timestamp {} out of range", w.at))?;
            Ok(NewEvent {
                id: w.id,
                body: w.body.get().to_owned(),
                received_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_info_fields_are_read() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version").as_deref(), Some("7.0.15"));
        assert!(!at_least("7.0.15", (7, 2)));
        assert!(at_least("7.2.0", (7, 2)));
        assert!(at_least("8.0.1", (7, 2)));
    }

    #[test]
    fn only_an_aof_synced_at_every_write_keeps_every_acknowledged_event() {
        assert_eq!(persistence_risk("yes", "always"), None);
        let none = persistence_risk("no", "everysec").unwrap();
        assert!(none.contains("appendonly no"), "{none}");
        let everysec = persistence_risk("yes", "everysec").unwrap();
        assert!(everysec.contains("appendfsync everysec"), "{everysec}");
        let never = persistence_risk("yes", "no").unwrap();
        assert!(never.contains("appendfsync no"), "{never}");
    }

    #[test]
    fn an_entry_decodes_to_the_events_encoded() {
        let at = DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let events = vec![
            NewEvent {
                id: "a \"quoted\" id".into(),
                body: r#"{"id":"a \"quoted\" id","n":[1,2]}"#.into(),
                received_at: at,
            },
            NewEvent {
                id: "b".into(),
                body: "{}".into(),
                received_at: at,
            },
        ];
        assert_eq!(decode(encode(&events).as_bytes()).unwrap(), events);
        assert!(decode(b"[{\"id\":1}]").is_err());
    }
}
