//! What every backend must do for open task types: a claimer takes only the
//! types it runs (on the fast path, in limited queues and by key), a
//! submission's timeout travels with its task, workers report their types,
//! and queued tasks are counted per type.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use weir_core::*;

use super::{claim, insert_params};

fn typed(kind: &str, now: chrono::DateTime<Utc>) -> TaskInsertParams {
    let mut p = insert_params(Builtin::Noop, kind, now);
    p.kind = TaskType::new(kind).unwrap();
    p.input = json!({});
    p.cache_key = None;
    p
}

pub async fn claimers_take_only_the_types_they_run(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .queue_configure(&QueueLimits {
            name: "limited".into(),
            concurrency: Some(10),
            rate_per_second: None,
            burst: None,
            paused: false,
        })
        .await
        .unwrap();
    for kind in ["resize", "deliver", "resize", "deliver"] {
        store.task_insert(typed(kind, now)).await.unwrap();
        let mut keyed = typed(kind, now);
        keyed.concurrency_key = Some(format!("k-{kind}"));
        store.task_insert(keyed).await.unwrap();
        let mut limited = typed(kind, now);
        limited.queue = "limited".into();
        store.task_insert(limited).await.unwrap();
    }
    let mut only_resize = claim("w1", 100, now);
    only_resize.types = Some(vec!["resize".into()]);
    let got = store.task_claim(only_resize).await.unwrap();
    assert!(!got.is_empty());
    assert!(got.iter().all(|t| t.kind.as_str() == "resize"), "{got:?}");
    // 2 unkeyed + 2 limited + 1 for the key (key limit 1).
    assert_eq!(got.len(), 5, "{got:?}");
    let mut none = claim("w2", 100, now);
    none.types = Some(vec![]);
    assert!(store.task_claim(none).await.unwrap().is_empty());
    let rest = store.task_claim(claim("w3", 100, now)).await.unwrap();
    assert!(
        rest.iter().all(|t| t.kind.as_str() == "deliver"),
        "{rest:?}"
    );
    assert_eq!(rest.len(), 5);
}

pub async fn a_submissions_timeout_travels_with_its_task(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut p = typed("render", now);
    p.timeout = Some(Duration::from_millis(1500));
    let id = p.id;
    store
        .task_insert_many(&[p, typed("render", now)])
        .await
        .unwrap();
    assert_eq!(
        store.task_get(id).await.unwrap().unwrap().timeout_ms,
        Some(1500)
    );
    let got = store.task_claim(claim("w", 10, now)).await.unwrap();
    let mine = got.iter().find(|t| t.id == id).unwrap();
    assert_eq!(mine.timeout, Some(Duration::from_millis(1500)));
    assert!(got
        .iter()
        .filter(|t| t.id != id)
        .all(|t| t.timeout.is_none()));
    // And through the idempotent path.
    let mut p = typed("render", now);
    p.timeout = Some(Duration::from_secs(2));
    let (task, _) = store
        .task_insert_idempotent(p, &"render-key".into(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(task.timeout_ms, Some(2000));
}

pub async fn workers_report_their_types_and_queued_tasks_count_by_type(store: Arc<dyn Store>) {
    let now = Utc::now();
    store
        .worker_heartbeat(WorkerHeartbeatParams {
            worker_id: "w-typed".into(),
            status: WorkerStatus::Online,
            concurrency: 2,
            active_tasks: 0,
            current_task: None,
            processed: 0,
            failed: 0,
            started_at: now,
            now,
            task_types: vec!["md5".into(), "resize".into()],
        })
        .await
        .unwrap();
    let workers = store.worker_list().await.unwrap();
    let w = workers.iter().find(|w| w.id == "w-typed").unwrap();
    assert_eq!(w.task_types, vec!["md5".to_string(), "resize".to_string()]);
    for kind in ["resize", "resize", "orphan"] {
        store.task_insert(typed(kind, now)).await.unwrap();
    }
    assert_eq!(
        store.task_queued_by_type().await.unwrap(),
        vec![("orphan".to_string(), 1), ("resize".to_string(), 2)]
    );
}
