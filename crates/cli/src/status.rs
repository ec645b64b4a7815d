//! `weir status`: the cluster at a glance, from its load balancer — nodes,
//! workers, tasks by state, the cache — with a verdict on balance and backlog.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// A node's share may stray this far from the fair share and still count as balanced.
const BALANCE_TOLERANCE: f64 = 0.2;

#[derive(Debug, Serialize)]
pub struct Status {
    pub strategy: String,
    pub nodes: Vec<Value>,
    pub workers: Vec<Value>,
    pub tasks: Value,
    pub cache: Value,
    pub verdicts: Vec<String>,
}

async fn get(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    anyhow::ensure!(
        resp.status().is_success(),
        "{url} answered {}",
        resp.status()
    );
    Ok(resp.json().await?)
}

/// Reads the cluster behind the lb at `target`.
pub async fn collect(target: &str) -> anyhow::Result<Status> {
    let target = target.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let lb = get(&http, format!("{target}/lb/stats")).await?;
    let workers = get(&http, format!("{target}/workers")).await?;
    let tasks = get(&http, format!("{target}/tasks/stats")).await?;
    let cache = get(&http, format!("{target}/cache/stats")).await?;
    let nodes = lb["backends"].as_array().cloned().unwrap_or_default();
    let workers = workers["workers"].as_array().cloned().unwrap_or_default();
    let verdicts = verdicts(&nodes, &workers, &tasks);
    Ok(Status {
        strategy: lb["strategy"].as_str().unwrap_or("?").to_string(),
        nodes,
        workers,
        tasks,
        cache,
        verdicts,
    })
}

/// Plain-language findings: balance across nodes and workers, and the backlog.
fn verdicts(nodes: &[Value], workers: &[Value], tasks: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let shares = |counts: Vec<f64>, what: &str, out: &mut Vec<String>| {
        let total: f64 = counts.iter().sum();
        if counts.len() < 2 || total < 20.0 {
            return;
        }
        let fair = total / counts.len() as f64;
        let worst = counts
            .iter()
            .map(|c| (c - fair).abs() / fair)
            .fold(0.0, f64::max);
        if worst <= BALANCE_TOLERANCE {
            out.push(format!(
                "{what}: balanced (every share within {:.0}% of fair)",
                worst * 100.0
            ));
        } else {
            out.push(format!(
                "{what}: unbalanced (a share is {:.0}% off fair)",
                worst * 100.0
            ));
        }
    };
    let healthy: Vec<&Value> = nodes.iter().filter(|n| n["healthy"] == true).collect();
    if healthy.len() < nodes.len() {
        out.push(format!(
            "nodes: {} of {} healthy",
            healthy.len(),
            nodes.len()
        ));
    }
    shares(
        nodes
            .iter()
            .map(|n| n["requests"].as_f64().unwrap_or(0.0))
            .collect(),
        "nodes",
        &mut out,
    );
    let online: Vec<&Value> = workers
        .iter()
        .filter(|w| w["status"] != "offline")
        .collect();
    shares(
        online
            .iter()
            .map(|w| w["processed"].as_f64().unwrap_or(0.0))
            .collect(),
        "workers",
        &mut out,
    );
    let queued = tasks["queued"].as_i64().unwrap_or(0);
    let capacity: i64 = online
        .iter()
        .map(|w| w["concurrency"].as_i64().unwrap_or(0))
        .sum();
    let busy: i64 = online
        .iter()
        .map(|w| w["active_tasks"].as_i64().unwrap_or(0))
        .sum();
    if online.is_empty() && queued > 0 {
        out.push(format!(
            "queue: {queued} tasks waiting and no worker online: start workers"
        ));
    } else if queued > capacity && busy >= capacity {
        out.push(format!(
            "queue: {queued} waiting with every worker slot busy ({busy}/{capacity}): add workers or concurrency"
        ));
    } else {
        out.push(format!(
            "queue: {queued} waiting, {busy}/{capacity} worker slots busy"
        ));
    }
    // A named queue at its own limit waits by design: more workers won't help.
    for q in tasks["queues"].as_array().into_iter().flatten() {
        let (waiting, running) = (
            q["queued"].as_i64().unwrap_or(0),
            q["running"].as_i64().unwrap_or(0),
        );
        if let Some(limit) = q["concurrency"].as_i64() {
            if waiting > 0 && running >= limit {
                out.push(format!(
                    "queue {}: {waiting} waiting at its concurrency limit ({running}/{limit}): \
                     raise --queue-limit to drain it faster; more workers will not",
                    q["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    out
}

/// The status as text.
pub fn render(s: &Status) -> String {
    let mut out = format!("strategy {}\n\nnodes\n", s.strategy);
    for n in &s.nodes {
        out += &format!(
            "  {:<24} {:<9} requests {:>8}  in flight {:>4}  errors {:>5}  p99 {}\n",
            n["node"].as_str().or(n["id"].as_str()).unwrap_or("?"),
            if n["healthy"] == true {
                "healthy"
            } else {
                "DOWN"
            },
            n["requests"],
            n["in_flight"],
            n["errors"],
            n["latency_p99_ms"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.1} ms")),
        );
    }
    out += "\nworkers\n";
    for w in &s.workers {
        out += &format!(
            "  {:<24} {:<9} active {:>3}/{:<3} processed {:>8}  failed {:>6}\n",
            w["id"].as_str().unwrap_or("?"),
            w["status"].as_str().unwrap_or("?"),
            w["active_tasks"],
            w["concurrency"],
            w["processed"],
            w["failed"],
        );
    }
    out += &format!(
        "\ntasks   queued {}  running {}  succeeded {}  dead {}  cancelled {}\n",
        s.tasks["queued"],
        s.tasks["running"],
        s.tasks["succeeded"],
        s.tasks["dead"],
        s.tasks["cancelled"]
    );
    if let Some(queues) = s.tasks["queues"].as_array() {
        for q in queues {
            let limit = |f: &str| q[f].as_f64().map_or("-".to_string(), |v| v.to_string());
            out += &format!(
                "  queue {:<20} queued {:>7}  running {:>5}  concurrency {:>5}  rate/s {:>6}\n",
                q["name"].as_str().unwrap_or("?"),
                q["queued"],
                q["running"],
                limit("concurrency"),
                limit("rate_per_second"),
            );
        }
    }
    out += &format!(
        "cache   entries {}  hits {}  misses {}\n\n",
        s.cache["entries"], s.cache["hits"], s.cache["misses"]
    );
    for v in &s.verdicts {
        out += &format!("- {v}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::verdicts;

    #[test]
    fn a_queue_at_its_own_limit_is_not_told_to_add_workers() {
        let workers =
            vec![json!({"status": "online", "concurrency": 4, "active_tasks": 1, "processed": 9})];
        let tasks = json!({"queued": 5, "queues": [
            {"name": "reports", "queued": 5, "running": 1, "concurrency": 1},
            {"name": "default", "queued": 0, "running": 0, "concurrency": null},
        ]});
        let v = verdicts(&[], &workers, &tasks);
        let limited: Vec<&String> = v
            .iter()
            .filter(|l| l.starts_with("queue reports"))
            .collect();
        assert_eq!(limited.len(), 1, "{v:?}");
        assert!(limited[0].contains("concurrency limit (1/1)"), "{v:?}");
        assert!(!v.iter().any(|l| l.contains("add workers")), "{v:?}");
    }
}
