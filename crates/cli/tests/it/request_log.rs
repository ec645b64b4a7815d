//! `GET /` writes a request-log row through the lb, and round robin spreads load.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::{Stack, StackOptions, StoreKind};

async fn get_root_logs_a_row_and_names_the_node(store: StoreKind) {
    let stack = Stack::start(StackOptions::on(store)).await;
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

    // The row is committed before the answer: read the database directly.
    let rows = stack.request_rows("/").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].node_id, node);
    assert_eq!(rows[0].status, 200);
    assert_eq!(rows[0].message.as_deref(), Some("hello"));
    assert!(rows[0].created_at_ms > 0);

    let (status, stats) = stack.get_json("/requests/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["nodes"][&node], 1, "{stats}");
    stack.stop().await;
}

/// The seeds' check: 200 requests from 50 clients against nodes that take a
/// while; every request logged, counts per node even under round robin, and the
/// nodes work concurrently (far below the 200 × delay a serial system needs).
async fn round_robin_spreads_delayed_load_evenly(store: StoreKind) {
    let delay = Duration::from_millis(300);
    let stack = Stack::start(StackOptions {
        store,
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

crate::for_each_store!(
    get_root_logs_a_row_and_names_the_node,
    round_robin_spreads_delayed_load_evenly
);
