//! What every backend must do for named queues and concurrency keys: limits
//! hold across claimers, rate limits spend and refill tokens, keys cap their
//! running tasks, workers claim only their queues.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use weir_core::*;

use super::{claim, insert_params, success};

async fn insert_in(
    store: &Arc<dyn Store>,
    queue: &str,
    key: Option<&str>,
    n: usize,
    now: DateTime<Utc>,
) {
    for i in 0..n {
        let mut p = insert_params(Builtin::Md5, &format!("{queue}-{key:?}-{i}"), now);
        p.queue = queue.into();
        p.concurrency_key = key.map(str::to_string);
        store.task_insert(p).await.unwrap();
    }
}

async fn queue_of(store: &Arc<dyn Store>, t: &ClaimedTask) -> (String, Option<String>) {
    let task = store.task_get(t.id).await.unwrap().unwrap();
    (task.queue, task.concurrency_key)
}

pub async fn queue_concurrency_limit_holds_across_claimers(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .queue_configure(&QueueLimits {
            name: "emails".into(),
            concurrency: Some(2),
            rate_per_second: None,
            burst: None,
            paused: false,
        })
        .await
        .unwrap();
    insert_in(&store, "emails", None, 5, now).await;
    insert_in(&store, "default", None, 3, now).await;
    let first = store.task_claim(claim("w1", 10, now)).await.unwrap();
    let mut in_emails = Vec::new();
    for t in &first {
        if queue_of(&store, t).await.0 == "emails" {
            in_emails.push(t.clone());
        }
    }
    assert_eq!(first.len(), 5, "3 unlimited + 2 of the limited queue");
    assert_eq!(in_emails.len(), 2);
    let depths: Vec<_> = store
        .queue_depths()
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.queue, d.queued, d.running))
        .collect();
    assert_eq!(
        depths,
        vec![("default".to_string(), 0, 3), ("emails".to_string(), 3, 2)]
    );
    // Another claimer finds the queue at its limit.
    assert!(store
        .task_claim(claim("w2", 10, now))
        .await
        .unwrap()
        .is_empty());
    // One finishes: exactly one more may start.
    store
        .task_complete_many(&[success(&in_emails[0], now, None)])
        .await
        .unwrap();
    let next = store.task_claim(claim("w2", 10, now)).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(queue_of(&store, &next[0]).await.0, "emails");
    let limits = store.queue_list().await.unwrap();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].concurrency, Some(2));
    // Cleared limits: the rest run freely.
    store
        .queue_configure(&QueueLimits {
            name: "emails".into(),
            concurrency: None,
            rate_per_second: None,
            burst: None,
            paused: false,
        })
        .await
        .unwrap();
    assert_eq!(
        store.task_claim(claim("w3", 10, now)).await.unwrap().len(),
        2
    );
    assert!(store.queue_list().await.unwrap().is_empty());
}

pub async fn queue_rate_limit_spends_tokens_and_refills(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    store
        .queue_configure(&QueueLimits {
            name: "api-calls".into(),
            concurrency: None,
            rate_per_second: Some(1.0),
            burst: Some(2),
            paused: false,
        })
        .await
        .unwrap();
    insert_in(&store, "api-calls", None, 6, t0).await;
    // A full bucket: the burst.
    assert_eq!(store.task_claim(claim("w", 10, t0)).await.unwrap().len(), 2);
    assert!(store
        .task_claim(claim("w", 10, t0))
        .await
        .unwrap()
        .is_empty());
    // 1.5 s later: 1.5 tokens, one task; the half token stays.
    let t1 = t0 + chrono::Duration::milliseconds(1500);
    assert_eq!(store.task_claim(claim("w", 10, t1)).await.unwrap().len(), 1);
    assert!(store
        .task_claim(claim("w", 10, t1))
        .await
        .unwrap()
        .is_empty());
    let t2 = t1 + chrono::Duration::milliseconds(600);
    assert_eq!(store.task_claim(claim("w", 10, t2)).await.unwrap().len(), 1);
    // A long pause refills only up to the burst.
    let t3 = t2 + chrono::Duration::seconds(60);
    assert_eq!(store.task_claim(claim("w", 10, t3)).await.unwrap().len(), 2);
}

/// Claims skip the look for keyed tasks while only unkeyed ones arrive; a
/// keyed one is still claimed by the next claim (within the hint's pause
/// of the last look, so a keyed insert must be what re-opens it).
pub async fn a_keyed_task_queued_after_unkeyed_ones_is_claimed_at_once(store: Arc<dyn Store>) {
    let now = Utc::now();
    for (i, key) in [None, None, Some("k")].into_iter().enumerate() {
        let mut p = insert_params(Builtin::Md5, &format!("keyed-after-{i}"), now);
        p.concurrency_key = key.map(str::to_string);
        let id = p.id;
        store.task_insert(p).await.unwrap();
        let got = store.task_claim(claim("w", 10, now)).await.unwrap();
        assert_eq!(
            got.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![id],
            "task {i} (key {key:?}) claimed by the claim right after it"
        );
    }
}

pub async fn concurrency_key_limits_running_tasks_per_key(store: Arc<dyn Store>) {
    let now = Utc::now();
    insert_in(&store, "default", Some("tenant-a"), 3, now).await;
    insert_in(&store, "default", Some("tenant-b"), 2, now).await;
    insert_in(&store, "default", None, 1, now).await;
    let first = store.task_claim(claim("w1", 10, now)).await.unwrap();
    let mut keys = Vec::new();
    for t in &first {
        keys.push(queue_of(&store, t).await.1);
    }
    keys.sort();
    assert_eq!(
        keys,
        [
            None,
            Some("tenant-a".to_string()),
            Some("tenant-b".to_string())
        ],
        "one per key (limit 1) plus the unkeyed task"
    );
    assert!(store
        .task_claim(claim("w2", 10, now))
        .await
        .unwrap()
        .is_empty());
    // With a limit of 2, one more per key.
    let mut two = claim("w2", 10, now);
    two.key_limit = 2;
    let second = store.task_claim(two).await.unwrap();
    assert_eq!(second.len(), 2);
    // A finished task frees its key's slot.
    let mut done = Vec::new();
    for t in first.iter().chain(&second) {
        if queue_of(&store, t).await.1.as_deref() == Some("tenant-a") {
            done.push(success(t, now, None));
        }
    }
    assert_eq!(done.len(), 2, "tenant-a had two running");
    store.task_complete_many(&done).await.unwrap();
    let mut three = claim("w3", 10, now);
    three.key_limit = 2;
    let next = store.task_claim(three).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(
        queue_of(&store, &next[0]).await.1.as_deref(),
        Some("tenant-a")
    );
}

pub async fn workers_claim_only_their_queues(store: Arc<dyn Store>) {
    let now = Utc::now();
    insert_in(&store, "reports", None, 2, now).await;
    insert_in(&store, "default", None, 2, now).await;
    insert_in(&store, "reports", Some("k"), 1, now).await;
    let mut only = claim("w", 10, now);
    only.queues = Some(vec!["reports".into()]);
    let got = store.task_claim(only).await.unwrap();
    assert_eq!(got.len(), 3);
    for t in &got {
        assert_eq!(queue_of(&store, t).await.0, "reports");
    }
    assert_eq!(
        store.task_claim(claim("any", 10, now)).await.unwrap().len(),
        2
    );
}

pub async fn a_paused_queue_is_claimed_by_no_one_until_resumed(store: Arc<dyn Store>) {
    let now = Utc::now();
    insert_in(&store, "emails", None, 2, now).await;
    insert_in(&store, "emails", Some("acct-1"), 1, now).await;
    insert_in(&store, "reports", None, 2, now).await;
    insert_in(&store, "default", None, 1, now).await;
    store
        .queue_configure(&QueueLimits {
            name: "reports".into(),
            concurrency: Some(5),
            rate_per_second: None,
            burst: None,
            paused: false,
        })
        .await
        .unwrap();
    // A queue without limits and one with: both held, keyed tasks too.
    store.queue_pause("emails", true).await.unwrap();
    store.queue_pause("reports", true).await.unwrap();
    let claimed = store.task_claim(claim("w1", 10, now)).await.unwrap();
    let mut queues = Vec::new();
    for t in &claimed {
        queues.push(queue_of(&store, t).await.0);
    }
    assert_eq!(queues, ["default"]);
    let listed = store.queue_list().await.unwrap();
    let paused: Vec<_> = listed
        .iter()
        .filter(|q| q.paused)
        .map(|q| &q.name)
        .collect();
    assert_eq!(paused, ["emails", "reports"]);
    // Setting limits (a worker starting with --queue-limit) keeps the pause.
    store
        .queue_configure(&QueueLimits {
            name: "reports".into(),
            concurrency: Some(1),
            rate_per_second: None,
            burst: None,
            paused: false,
        })
        .await
        .unwrap();
    let depths = store.queue_depths().await.unwrap();
    let emails = depths.iter().find(|d| d.queue == "emails").unwrap();
    assert_eq!(emails.queued, 3);
    assert!(emails.oldest_queued_at.is_some_and(|at| at <= now));
    assert!(store
        .task_claim(claim("w1", 10, now))
        .await
        .unwrap()
        .is_empty());
    // Resumed: claimable again, each under its limits.
    store.queue_pause("emails", false).await.unwrap();
    store.queue_pause("reports", false).await.unwrap();
    let claimed = store.task_claim(claim("w2", 10, now)).await.unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for t in &claimed {
        *counts.entry(queue_of(&store, t).await.0).or_insert(0) += 1;
    }
    assert_eq!(counts.get("emails"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("reports"), Some(&1), "{counts:?}");
    assert!(store.queue_list().await.unwrap().iter().all(|q| !q.paused));
}
