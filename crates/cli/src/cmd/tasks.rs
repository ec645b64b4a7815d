//! `weir tasks list|show|retry|cancel|delete`: the task endpoints of the
//! HTTP API. Retry, cancel and delete are one bulk action each (over the
//! ids given, or over what the filter matches), followed until done.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::api_client::{call, client};
use crate::config::{BulkTarget, TaskFilterArgs, TasksAction, TasksArgs};

pub async fn run(args: TasksArgs) -> anyhow::Result<()> {
    let http = client(args.cluster.api_key.as_deref(), Duration::from_secs(30))?;
    let base = args.cluster.target.trim_end_matches('/');
    let (answer, shown) = match args.action {
        TasksAction::List {
            filter,
            by_finish,
            limit,
        } => {
            let mut query = filter_fields(&filter)?;
            if by_finish {
                query.insert("sort".into(), "finished".into());
            }
            query.insert("limit".into(), limit.into());
            let pairs: Vec<(String, String)> = query
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let page = call(http.get(format!("{base}/tasks")).query(&pairs)).await?;
            let table = list_table(page["tasks"].as_array().map_or(&[][..], Vec::as_slice));
            (page, table)
        }
        TasksAction::Show { id } => {
            let task = call(http.get(format!("{base}/tasks/{id}"))).await?;
            let text = serde_json::to_string_pretty(&task)?;
            (task, format!("{text}\n"))
        }
        TasksAction::Retry(target) => bulk(&http, base, "retry", target).await?,
        TasksAction::Cancel(target) => bulk(&http, base, "cancel", target).await?,
        TasksAction::Delete(target) => bulk(&http, base, "delete", target).await?,
    };
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{shown}");
    }
    Ok(())
}

/// The filter as the API names its fields (times made absolute now).
fn filter_fields(f: &TaskFilterArgs) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    let ago = |d: &Duration| -> anyhow::Result<Value> {
        let at = chrono::Utc::now() - chrono::TimeDelta::from_std(*d)?;
        Ok(at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into())
    };
    for (name, value) in [
        ("state", &f.state),
        ("type", &f.kind),
        ("queue", &f.queue),
        ("tenant", &f.tenant),
        ("workflow", &f.workflow),
        ("error", &f.error),
    ] {
        if let Some(v) = value {
            out.insert(name.into(), v.clone().into());
        }
    }
    if let Some(d) = &f.since {
        out.insert("created_after".into(), ago(d)?);
    }
    if let Some(d) = &f.finished_since {
        out.insert("finished_after".into(), ago(d)?);
    }
    Ok(out)
}

/// Starts a bulk action and (unless `--no-wait`) follows it until done.
async fn bulk(
    http: &reqwest::Client,
    base: &str,
    action: &str,
    target: BulkTarget,
) -> anyhow::Result<(Value, String)> {
    let filter = filter_fields(&target.filter)?;
    let body = match (target.ids.is_empty(), filter.is_empty()) {
        (false, true) => json!({"action": action, "ids": target.ids}),
        (false, false) => anyhow::bail!("give task ids or filter flags, not both"),
        (true, true) if !target.all => {
            anyhow::bail!("no ids and no filter: that is every task; say --all if you mean it")
        }
        (true, _) => json!({"action": action, "filter": filter}),
    };
    let mut job = call(http.post(format!("{base}/tasks/bulk")).json(&body)).await?;
    let id = job["bulk_id"].as_str().unwrap_or_default().to_string();
    while !target.no_wait && job["status"] == "running" {
        tokio::time::sleep(Duration::from_millis(200)).await;
        job = call(http.get(format!("{base}/tasks/bulk/{id}"))).await?;
    }
    let line = format!(
        "bulk {action} {id}: {} — {} looked at, {} changed, {} left as they were\n",
        job["status"].as_str().unwrap_or("?"),
        job["processed"],
        job["changed"],
        job["skipped"],
    );
    Ok((job, line))
}

/// Tasks as a table, one line each, the error cut to fit.
fn list_table(tasks: &[Value]) -> String {
    let mut out = format!(
        "{:<36} {:<16} {:<12} {:<9} {:>8} {:<24} {}\n",
        "ID", "TYPE", "QUEUE", "STATE", "ATTEMPTS", "CREATED", "ERROR"
    );
    for t in tasks {
        let error: String = t["error"].as_str().unwrap_or("").chars().take(60).collect();
        out += &format!(
            "{:<36} {:<16} {:<12} {:<9} {:>8} {:<24} {}\n",
            t["id"].as_str().unwrap_or("?"),
            t["type"].as_str().unwrap_or("?"),
            t["queue"].as_str().unwrap_or("?"),
            t["status"].as_str().unwrap_or("?"),
            format!("{}/{}", t["attempts"], t["max_attempts"]),
            t["created_at"].as_str().unwrap_or("?"),
            error.replace('\n', " "),
        );
    }
    out
}
