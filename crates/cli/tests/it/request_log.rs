//! `GET /` writes a request-log row through the lb, and round robin spreads load.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::Row;

use crate::support::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_root_logs_a_row_and_names_the_node() {
    let stack = Stack::start(StackOptions::default()).await;
    let resp = stack
        .http
        .get(stack.url("/?message=hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let node = resp.headers()["x-weir-node"].to_str().unwrap().to_string();
    assert!(node.starts_with("api-"), "{node}");
    assert_eq!(
        resp.text().await.unwrap(),
        format!("Written to DB by node {node}")
    );

    // The row is committed before the answer: read the file directly.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", stack.db_path.display()))
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT id, node_id, path, status, message, created_at FROM requests WHERE path = '/'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("node_id"), node);
    assert_eq!(row.get::<i64, _>("status"), 200);
    assert_eq!(
        row.get::<Option<String>, _>("message").as_deref(),
        Some("hello")
    );
    assert!(row.get::<i64, _>("created_at") > 0);
    db.close().await;

    let (status, stats) = stack.get_json("/requests/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["nodes"][&node], 1, "{stats}");
    stack.stop().await;
}

/// The seeds' check: 200 requests from 50 clients against nodes that take a
/// while; every request logged, counts per node even under round robin, and the
/// nodes work concurrently (far below the 200 × delay a serial system needs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_delayed_load_evenly() {
    let delay = Duration::from_millis(300);
    let stack = Stack::start(StackOptions {
        delay,
        ..StackOptions::default()
    })
    .await;
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..50 {
        let (http, url) = (stack.http.clone(), stack.url(""));
        clients.spawn(async move {
            let mut nodes = Vec::new();
            for i in 0..4 {
                let resp = http
                    .get(format!("{url}/?message=c{c}-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                nodes.push(resp.headers()["x-weir-node"].to_str().unwrap().to_string());
            }
            nodes
        });
    }
    let mut served: HashMap<String, i64> = HashMap::new();
    while let Some(nodes) = clients.join_next().await {
        for n in nodes.unwrap() {
            *served.entry(n).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < delay * 200 / 6,
        "200 requests took {elapsed:?}: nodes are not working concurrently"
    );

    let (_, stats) = stack.get_json("/requests/stats").await;
    assert_eq!(stats["total"], 200, "{stats}");
    let counts: Vec<i64> = ["api-1", "api-2", "api-3"]
        .iter()
        .map(|n| stats["nodes"][n].as_i64().unwrap_or(0))
        .collect();
    let mean = 200.0 / 3.0;
    for (node, count) in ["api-1", "api-2", "api-3"].iter().zip(&counts) {
        assert!(
            (*count as f64 - mean).abs() <= mean * 0.10,
            "{node} logged {count} of 200: not within 10% of a fair share ({counts:?})"
        );
        assert_eq!(
            served[*node], *count,
            "served and logged counts differ for {node}"
        );
    }
    stack.stop().await;
}
