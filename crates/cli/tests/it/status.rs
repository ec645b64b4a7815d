//! `weir status`: the cluster at a glance, with verdicts.

use serde_json::json;

use crate::support::{poll, Stack, StackOptions, StoreKind};
use std::time::Duration;

async fn status_shows_nodes_workers_tasks_and_a_balance_verdict(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
    for i in 0..30 {
        let resp = stack
            .http
            .get(stack.url(&format!("/?message=s{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (_, accepted) = stack
        .post_json("/tasks", &json!({"type": "noop", "input": {}}))
        .await;
    stack.wait_task(accepted["task_id"].as_str().unwrap()).await;

    let status = poll(Duration::from_secs(10), || async {
        let s = weir::status::collect(&stack.base).await.ok()?;
        (s.tasks["succeeded"] == 1).then_some(s)
    })
    .await;
    assert_eq!(status.strategy, "round_robin");
    assert_eq!(status.nodes.len(), 3);
    // The lb learned each node's own name from its answers.
    let mut names: Vec<&str> = status
        .nodes
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["api-1", "api-2", "api-3"]);
    assert_eq!(status.workers.len(), 3);
    assert!(
        status
            .verdicts
            .iter()
            .any(|v| v.starts_with("nodes: balanced")),
        "{:?}",
        status.verdicts
    );
    assert!(
        status
            .verdicts
            .iter()
            .any(|v| v.starts_with("queue: 0 waiting")),
        "{:?}",
        status.verdicts
    );
    let text = weir::status::render(&status);
    assert!(
        text.contains("api-1") && text.contains("worker-1") && text.contains("succeeded 1"),
        "{text}"
    );
    stack.stop().await;
}

crate::for_each_store!(status_shows_nodes_workers_tasks_and_a_balance_verdict);
