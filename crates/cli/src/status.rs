//! `weir status`: the cluster at a glance, from its load balancer — nodes,
//! workers, tasks by state, the cache — with a verdict on balance and backlog.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use weir_core::Store;

/// A node's share may stray this far from the fair share and still count as balanced.
const BALANCE_TOLERANCE: f64 = 0.2;
/// Read from the store, a worker silent this long is offline (the API's default).
const OFFLINE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct Status {
    /// Where this was read: the lb's URL, or `database`.
    pub source: String,
    pub strategy: String,
    pub nodes: Vec<Value>,
    pub workers: Vec<Value>,
    pub tasks: Value,
    pub cache: Value,
    /// Requests per second through the lb over the last minute.
    pub requests_per_second: Option<f64>,
    /// Tasks finished (succeeded or dead) per second over the last minute.
    pub tasks_per_second: f64,
    /// How fast the queue grew (+) or drained (−) while sampled, per second.
    pub queue_trend_per_second: Option<f64>,
    pub verdicts: Vec<String>,
}

/// Where `weir status` reads the cluster.
pub enum Source {
    Lb(String),
    Store(Arc<dyn Store>),
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

/// One reading of everything, before verdicts.
struct Reading {
    strategy: String,
    nodes: Vec<Value>,
    workers: Vec<Value>,
    tasks: Value,
    cache: Value,
    requests_per_second: Option<f64>,
}

async fn tasks_now(source: &Source, http: &reqwest::Client) -> anyhow::Result<Value> {
    match source {
        Source::Lb(target) => get(http, format!("{target}/tasks/stats")).await,
        Source::Store(store) => Ok(serde_json::to_value(
            weir_api::task_stats(store.as_ref(), Utc::now()).await?,
        )?),
    }
}

async fn read(source: &Source, http: &reqwest::Client) -> anyhow::Result<Reading> {
    match source {
        Source::Lb(target) => {
            let lb = get(http, format!("{target}/lb/stats")).await?;
            let workers = get(http, format!("{target}/workers")).await?;
            Ok(Reading {
                strategy: lb["strategy"].as_str().unwrap_or("?").to_string(),
                nodes: lb["backends"].as_array().cloned().unwrap_or_default(),
                workers: workers["workers"].as_array().cloned().unwrap_or_default(),
                tasks: tasks_now(source, http).await?,
                cache: get(http, format!("{target}/cache/stats")).await?,
                requests_per_second: lb["requests_per_second_last_minute"].as_f64(),
            })
        }
        Source::Store(store) => {
            let now = Utc::now();
            let workers = weir_api::worker_list(store.as_ref(), OFFLINE_AFTER, now).await?;
            // Without the lb, nodes are known by the requests they logged.
            let nodes = store
                .request_log_stats()
                .await?
                .nodes
                .into_iter()
                .map(|(node, requests)| json!({"node": node, "requests": requests}))
                .collect();
            Ok(Reading {
                strategy: "-".into(),
                nodes,
                workers: serde_json::to_value(workers)?["workers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                tasks: tasks_now(source, http).await?,
                cache: serde_json::to_value(weir_api::cache_stats(store.as_ref()).await?)?,
                requests_per_second: None,
            })
        }
    }
}

/// Reads the cluster, watching the queue for `sample` to see its trend.
pub async fn collect(source: &Source, sample: Duration) -> anyhow::Result<Status> {
    collect_with_key(source, sample, None).await
}

/// [`collect`], presenting `api_key` to API nodes that require keys (it
/// needs the `read` scope).
pub async fn collect_with_key(
    source: &Source,
    sample: Duration,
    api_key: Option<&str>,
) -> anyhow::Result<Status> {
    let http = crate::api_client::client(api_key, Duration::from_secs(5))?;
    let first_queued = if sample.is_zero() {
        None
    } else {
        let t = tasks_now(source, &http).await?;
        let at = std::time::Instant::now();
        tokio::time::sleep(sample).await;
        Some((t["queued"].as_i64().unwrap_or(0), at))
    };
    let r = read(source, &http).await?;
    let queue_trend_per_second = first_queued.map(|(before, at)| {
        let now = r.tasks["queued"].as_i64().unwrap_or(0);
        (now - before) as f64 / at.elapsed().as_secs_f64()
    });
    let finished = &r.tasks["finished_last_minute"];
    let tasks_per_second = (finished["succeeded"].as_i64().unwrap_or(0)
        + finished["dead"].as_i64().unwrap_or(0)) as f64
        / 60.0;
    let mut verdicts = verdicts(&r.nodes, &r.workers, &r.tasks);
    verdicts.extend(trend_verdict(queue_trend_per_second, &r.workers, &r.tasks));
    Ok(Status {
        source: match source {
            Source::Lb(target) => target.clone(),
            Source::Store(_) => "database".into(),
        },
        strategy: r.strategy,
        nodes: r.nodes,
        workers: r.workers,
        tasks: r.tasks,
        cache: r.cache,
        requests_per_second: r.requests_per_second,
        tasks_per_second,
        queue_trend_per_second,
        verdicts,
    })
}

/// Growing or draining, and what to do about it.
fn trend_verdict(trend: Option<f64>, workers: &[Value], tasks: &Value) -> Option<String> {
    let trend = trend?;
    let queued = tasks["queued"].as_i64().unwrap_or(0);
    let online = workers.iter().filter(|w| w["status"] != "offline");
    let (busy, capacity) = online.fold((0, 0), |(b, c), w| {
        (
            b + w["active_tasks"].as_i64().unwrap_or(0),
            c + w["concurrency"].as_i64().unwrap_or(0),
        )
    });
    if trend > 0.5 {
        Some(if capacity > 0 && busy >= capacity {
            format!("queue grows {trend:.0}/s with every worker slot busy ({busy}/{capacity}): add workers")
        } else {
            format!("queue grows {trend:.0}/s ({busy}/{capacity} worker slots busy)")
        })
    } else if trend < -0.5 && queued > 0 {
        Some(format!(
            "queue drains {:.0}/s: empty in about {:.0} s",
            -trend,
            queued as f64 / -trend
        ))
    } else {
        None
    }
}

/// Plain-language findings: balance across nodes and workers, the backlog,
/// types nobody runs, and queues held at their own limit.
fn verdicts(nodes: &[Value], workers: &[Value], tasks: &Value) -> Vec<String> {
    let online: Vec<&Value> = workers
        .iter()
        .filter(|w| w["status"] != "offline")
        .collect();
    let mut out = Vec::new();
    node_verdicts(nodes, &mut out);
    share_verdict(
        online
            .iter()
            .map(|w| w["processed"].as_f64().unwrap_or(0.0))
            .collect(),
        "workers",
        &mut out,
    );
    backlog_verdict(&online, tasks, &mut out);
    unrun_type_verdicts(&online, tasks, &mut out);
    queue_limit_verdicts(tasks, &mut out);
    out
}

/// Whether shares of work (requests per node, tasks per worker) are fair.
fn share_verdict(counts: Vec<f64>, what: &str, out: &mut Vec<String>) {
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
}

/// Nodes down (health is known only through the lb), and their balance.
fn node_verdicts(nodes: &[Value], out: &mut Vec<String>) {
    let down = nodes.iter().filter(|n| n["healthy"] == false).count();
    if down > 0 {
        out.push(format!(
            "nodes: {} of {} healthy",
            nodes.len() - down,
            nodes.len()
        ));
    }
    share_verdict(
        nodes
            .iter()
            .map(|n| n["requests"].as_f64().unwrap_or(0.0))
            .collect(),
        "nodes",
        out,
    );
}

/// The backlog against the workers' free slots.
fn backlog_verdict(online: &[&Value], tasks: &Value, out: &mut Vec<String>) {
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
}

/// A type no running worker can run waits forever, however many workers.
fn unrun_type_verdicts(online: &[&Value], tasks: &Value, out: &mut Vec<String>) {
    if online.is_empty() {
        return;
    }
    for (kind, n) in tasks["queued_by_type"].as_object().into_iter().flatten() {
        let runnable = online.iter().any(|w| {
            w["task_types"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == kind.as_str()))
        });
        if !runnable {
            out.push(format!(
                "problem: {} tasks of type {kind} queued and no running worker runs {kind}: \
                 start a worker with a handler for it (or an external worker that claims it)",
                n.as_i64().unwrap_or(0)
            ));
        }
    }
}

/// A named queue at its own limit waits by design: more workers won't help.
fn queue_limit_verdicts(tasks: &Value, out: &mut Vec<String>) {
    for q in tasks["queues"].as_array().into_iter().flatten() {
        let (waiting, running) = (
            q["queued"].as_i64().unwrap_or(0),
            q["running"].as_i64().unwrap_or(0),
        );
        if q["paused"] == true {
            out.push(format!(
                "queue {} is paused: {waiting} waiting, none claimed until \
                 POST /queues/{}/resume",
                q["name"].as_str().unwrap_or("?"),
                q["name"].as_str().unwrap_or("?")
            ));
            continue;
        }
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
}

/// A number as text, or `-` when this source does not know it.
fn shown(v: &Value) -> String {
    if v.is_null() {
        "-".into()
    } else {
        v.to_string()
    }
}

/// The status as text.
pub fn render(s: &Status) -> String {
    let mut out = format!("{}   strategy {}\n", s.source, s.strategy);
    let rate = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}/s"));
    out += &format!(
        "last minute: requests {}  tasks finished {}  queue trend {}\n\nnodes\n",
        rate(s.requests_per_second),
        rate(Some(s.tasks_per_second)),
        s.queue_trend_per_second
            .map_or("-".to_string(), |v| format!("{v:+.1}/s")),
    );
    for n in &s.nodes {
        out += &format!(
            "  {:<24} {:<9} requests {:>8}  in flight {:>4}  errors {:>5}  p99 {}\n",
            n["node"].as_str().or(n["id"].as_str()).unwrap_or("?"),
            match n["healthy"].as_bool() {
                Some(true) => "healthy",
                Some(false) => "DOWN",
                None => "-",
            },
            shown(&n["requests"]),
            shown(&n["in_flight"]),
            shown(&n["errors"]),
            n["latency_p99_ms"]
                .as_f64()
                .map_or("-".into(), |v| format!("{v:.1} ms")),
        );
    }
    out += "\nworkers\n";
    let now = Utc::now();
    for w in &s.workers {
        let heartbeat = w["last_heartbeat_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or("-".to_string(), |t| {
                let age = (now - t.with_timezone(&Utc)).num_milliseconds().max(0);
                format!("{:.1}s ago", age as f64 / 1000.0)
            });
        out += &format!(
            "  {:<24} {:<9} active {:>3}/{:<3} processed {:>8}  failed {:>6}  heartbeat {}\n",
            w["id"].as_str().unwrap_or("?"),
            w["status"].as_str().unwrap_or("?"),
            w["active_tasks"],
            w["concurrency"],
            w["processed"],
            w["failed"],
            heartbeat,
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
    if let Some(workflows) = s.tasks["workflows"].as_object() {
        let count = |status: &str| workflows.get(status).and_then(Value::as_i64).unwrap_or(0);
        out += &format!(
            "workflows running {}  succeeded {}  failed {}  cancelled {}  (steps waiting {})\n",
            count("running"),
            count("succeeded"),
            count("failed"),
            count("cancelled"),
            s.tasks["waiting"]
        );
    }
    if let Some(queues) = s.tasks["queues"].as_array() {
        for q in queues {
            let limit = |f: &str| q[f].as_f64().map_or("-".to_string(), |v| v.to_string());
            let paused = if q["paused"] == true { "  PAUSED" } else { "" };
            out += &format!(
                "  queue {:<20} queued {:>7}  running {:>5}  concurrency {:>5}  rate/s {:>6}{paused}\n",
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

    #[test]
    fn a_paused_queue_is_named_with_how_to_resume_it() {
        let tasks = json!({"queued": 4, "running": 0, "queues": [
            {"name": "emails", "queued": 4, "running": 0, "paused": true, "concurrency": 1},
        ]});
        let v = verdicts(&[], &[], &tasks);
        let paused = "queue emails is paused: 4 waiting, none claimed until \
                      POST /queues/emails/resume";
        assert!(v.iter().any(|l| l == paused), "{v:?}");
    }
}
