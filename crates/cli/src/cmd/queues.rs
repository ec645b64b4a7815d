//! `weir queues list|pause|resume|set`: the queue endpoints of the HTTP
//! API, as a table or `--json`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::{call, client};
use crate::config::{QueuesAction, QueuesArgs};

pub async fn run(args: QueuesArgs) -> anyhow::Result<()> {
    // A pause answers once every claimer holds to it: about a second.
    let http = client(args.cluster.api_key.as_deref(), Duration::from_secs(30))?;
    let base = args.cluster.target.trim_end_matches('/');
    let path = |name: &str, action: &str| format!("{base}/queues/{name}{action}");
    let answer = match &args.action {
        QueuesAction::List => call(http.get(format!("{base}/queues"))).await?,
        QueuesAction::Pause { name } => call(http.post(path(name, "/pause"))).await?,
        QueuesAction::Resume { name } => call(http.post(path(name, "/resume"))).await?,
        QueuesAction::Set {
            name,
            concurrency,
            rate,
            burst,
        } => {
            let limits =
                json!({"concurrency": concurrency, "rate_per_second": rate, "burst": burst});
            call(http.put(path(name, "")).json(&limits)).await?
        }
    };
    if args.cluster.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let queues = match answer["queues"].as_array() {
        Some(all) => all.clone(),
        None => vec![answer],
    };
    print!("{}", table(&queues));
    Ok(())
}

/// The queues as a table, one line each.
fn table(queues: &[Value]) -> String {
    let mut out = format!(
        "{:<24} {:<7} {:>8} {:>8} {:>12} {:>8} {:>7}\n",
        "QUEUE", "STATE", "QUEUED", "RUNNING", "CONCURRENCY", "RATE/S", "BURST"
    );
    let shown = |v: &Value| match v {
        Value::Null => "-".to_string(),
        v => v.to_string(),
    };
    for q in queues {
        let state = if q["paused"] == true {
            "paused"
        } else {
            "active"
        };
        out += &format!(
            "{:<24} {:<7} {:>8} {:>8} {:>12} {:>8} {:>7}\n",
            q["name"].as_str().unwrap_or("?"),
            state,
            shown(&q["queued"]),
            shown(&q["running"]),
            shown(&q["concurrency"]),
            shown(&q["rate_per_second"]),
            shown(&q["burst"]),
        );
    }
    out
}
