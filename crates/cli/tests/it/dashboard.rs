//! The lb's `/dashboard`, driven in headless Chromium against a running
//! `weir up`: the charts move under load and a strategy switch takes effect.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::{json, Value};

use crate::processes::{listening_url, WeirProcess};
use crate::support::poll;

const TOKEN: &str = "dashboard-test-token";

/// Debian's Chromium, installed by `scripts/ensure-chromium.sh` when missing.
fn chromium() -> PathBuf {
    let path = PathBuf::from("/usr/bin/chromium");
    if !path.exists() {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/ensure-chromium.sh"
        );
        let status = std::process::Command::new("bash")
            .arg(script)
            .status()
            .unwrap();
        assert!(status.success(), "could not install chromium ({script})");
    }
    path
}

/// Evaluates `js` in the page until it yields a value `check` accepts.
fn wait_for_value(tab: &Tab, js: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(v) = tab.evaluate(js, false).ok().and_then(|o| o.value) {
            if check(&v) {
                return v;
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{js} never passed its check; last value {last}");
}

/// `weir up` on `data_dir` with `extra` flags, ready; and the lb's URL.
fn start_up(data_dir: &str, extra: &[&str]) -> (WeirProcess, String) {
    let args = [
        &["up", "--listen", "127.0.0.1:0", "--data-dir", data_dir][..],
        extra,
    ]
    .concat();
    let (mut up, line) = WeirProcess::start(&args, "lb listening on");
    up.wait_line("ready");
    (up, listening_url(&line))
}

/// `weir up` with one API node, one worker and the external type `gate`
/// (a step the test ends when it wants to).
fn start_up_with_gate(data_dir: &str) -> (WeirProcess, String) {
    let flags = [
        "--api-nodes",
        "1",
        "--workers",
        "1",
        "--task-type",
        "gate=external",
    ];
    start_up(data_dir, &[&flags[..], &["--worker-token", TOKEN]].concat())
}

/// Headless Chromium showing `page` in a 1400×1000 window; the browser must
/// outlive the tab.
fn open_page(page: &str) -> (Browser, Arc<Tab>) {
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .sandbox(false)
        .window_size(Some((1400, 1000)))
        .build()
        .unwrap();
    let browser = Browser::new(options).unwrap();
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(page)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    (browser, tab)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_charts_follow_load_and_switch_the_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let (up, lb) = start_up(
        &data_dir,
        &["--api-nodes", "2", "--workers", "2", "--admin-token", TOKEN],
    );

    // Load for as long as the browser looks: hello requests and tasks.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (lb, stop) = (lb.clone(), stop.clone());
        async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = http.get(format!("{lb}/?message=dash")).send().await;
                if i.is_multiple_of(16) {
                    let task = json!({"type": "sleep", "input": {"ms": 300}});
                    let _ = http.post(format!("{lb}/tasks")).json(&task).send().await;
                }
                i += 1;
            }
        }
    });

    let page = format!("{lb}/dashboard");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let browser_view = tokio::task::spawn_blocking(move || {
        let (_browser, tab) = open_page(&page);

        // Charts update: several samples drawn, requests per second above 0,
        // one row per API node, tasks seen in the queue chart.
        wait_for_value(&tab, "window.weirDashboard.samples", |v| {
            v.as_u64() >= Some(3)
        });
        wait_for_value(&tab, "window.weirDashboard.rps", |v| {
            v.as_f64() > Some(1.0)
        });
        wait_for_value(
            &tab,
            "Number(document.getElementById('chart-rps').dataset.points)",
            |v| v.as_u64() >= Some(3),
        );
        wait_for_value(
            &tab,
            "document.querySelectorAll('#backends tr').length",
            |v| v.as_u64() == Some(2),
        );
        wait_for_value(
            &tab,
            "Math.max(...(weirDashboard.charts.queue.series.get('running') || [0]))",
            |v| v.as_f64() > Some(0.0),
        );
        wait_for_value(
            &tab,
            "document.querySelectorAll('#workers tr').length",
            |v| v.as_u64() == Some(2),
        );
        // Each worker's share of the work, from the processed counts.
        wait_for_value(
            &tab,
            "[...document.querySelectorAll('#workers .bar')].filter(b => parseFloat(b.style.width) > 0).length",
            |v| v.as_u64() >= Some(1),
        );
        wait_for_value(&tab, "document.getElementById('rps').textContent", |v| {
            v.as_str().and_then(|s| s.replace(',', "").parse::<f64>().ok()) > Some(0.0)
        });

        // Switch the strategy as a user would: token once, pick, click.
        tab.find_element("#token").unwrap().click().unwrap();
        tab.type_str(TOKEN).unwrap();
        tab.find_element("#save-token").unwrap().click().unwrap();
        tab.evaluate(
            "document.getElementById('strategy').value = 'least_connections'",
            false,
        )
        .unwrap();
        tab.find_element("#apply-strategy").unwrap().click().unwrap();
        wait_for_value(
            &tab,
            "document.getElementById('strategy-current').textContent",
            |v| v == "least_connections",
        );
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        std::fs::write(&shot, png).unwrap();
        tab.evaluate("sessionStorage.getItem('weir-admin-token')", false)
            .unwrap()
            .value
    })
    .await
    .unwrap();
    assert_eq!(
        browser_view,
        Some(json!(TOKEN)),
        "token kept in the session"
    );

    // The switch reached the lb, not only the page.
    let http = reqwest::Client::new();
    let strategy: Value = poll(Duration::from_secs(10), || async {
        let v: Value = http
            .get(format!("{lb}/lb/strategy"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(v)
    })
    .await;
    assert_eq!(strategy["strategy"], "least_connections");
    // And the lb's audit log says who switched it, and to what.
    let audit: Value = http
        .get(format!("{lb}/lb/audit"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &audit["entries"][0];
    assert_eq!(
        (entry["action"].as_str(), entry["actor"].as_str()),
        (Some("lb.strategy"), Some("admin")),
        "{audit}"
    );
    assert_eq!(entry["detail"]["strategy"], "least_connections");
    assert_eq!(entry["client_ip"], "127.0.0.1");
    assert!(
        !audit.to_string().contains(TOKEN),
        "the admin token in {audit}"
    );
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    up.terminate();
}

/// Regression: with `--api-keys`, the task and worker panels got 401s and
/// stayed empty; the page now asks for a key once and sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_panels_send_the_api_key_they_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let (key, entry) = weir_api::api_keys::ApiKeys::generate(
        "dashboard",
        &[weir_api::api_keys::Scope::Read],
        None,
    );
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, entry).unwrap();
    let data_dir = dir.path().join("data").display().to_string();
    let keys = keys.display().to_string();
    let (up, lb) = start_up(&data_dir, &["--api-keys", &keys]);
    let page = format!("{lb}/dashboard");
    let view = tokio::task::spawn_blocking(move || {
        let (_browser, tab) = open_page(&page);
        let form_shown = "document.getElementById('key-form').style.display !== 'none'";
        wait_for_value(&tab, form_shown, |v| v == &json!(true));
        let queued = "document.getElementById('queued').textContent";
        assert_eq!(tab.evaluate(queued, false).unwrap().value, Some(json!("–")));
        tab.find_element("#api-key").unwrap().click().unwrap();
        tab.type_str(&key).unwrap();
        tab.find_element("#save-key").unwrap().click().unwrap();
        wait_for_value(&tab, queued, |v| v == &json!("0"));
        wait_for_value(&tab, form_shown, |v| v == &json!(false))
    })
    .await
    .unwrap();
    assert_eq!(view, json!(false));
    up.terminate();
}

/// The Workflows panel lists workflows and draws the newest as its graph,
/// steps coloured by state, and follows the steps as they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_draws_a_workflow_and_follows_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let (up, lb) = start_up_with_gate(&data_dir);
    let http = reqwest::Client::new();
    let flow = json!({"name": "nightly-report", "steps": [
        {"id": "gate", "type": "gate", "input": {}},
        {"id": "hash-a", "type": "md5", "input": {"string": "a"}, "depends_on": ["gate"]},
        {"id": "hash-b", "type": "md5", "input": {"string": "b"}, "depends_on": ["gate"]},
        {"id": "hash-c", "type": "sha256", "input": {"string": "c"}, "depends_on": ["gate"]},
        {"id": "report", "type": "noop", "input": {}, "depends_on": ["hash-a", "hash-b", "hash-c"]}
    ]});
    let accepted: Value = http
        .post(format!("{lb}/workflows"))
        .json(&flow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gate = accepted["steps"]["gate"].as_str().unwrap().to_string();

    let page = format!("{lb}/dashboard");
    let status_of = |step: &str| {
        format!(
            "(document.querySelector('#workflow-graph g.step[data-step=\"{step}\"]') || {{dataset: {{}}}}).dataset.status"
        )
    };
    let (browser, tab) = tokio::task::spawn_blocking({
        let (gate_js, report_js) = (status_of("gate"), status_of("report"));
        move || {
            let (browser, tab) = open_page(&page);
            wait_for_value(
                &tab,
                "document.querySelectorAll('#workflow-graph g.step').length",
                |v| v.as_u64() == Some(5),
            );
            wait_for_value(&tab, &gate_js, |v| v == "queued");
            wait_for_value(&tab, &report_js, |v| v == "waiting");
            // Edges: three out of the gate, three into the report.
            wait_for_value(
                &tab,
                "document.querySelectorAll('#workflow-graph line').length",
                |v| v.as_u64() == Some(6),
            );
            (browser, tab)
        }
    })
    .await
    .unwrap();

    // The gate runs and ends; the page follows without a reload.
    let claimed: Value = http
        .post(format!("{lb}/workers/ext/claim"))
        .bearer_auth(TOKEN)
        .json(&json!({"types": ["gate"], "wait": "5s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = claimed["tasks"][0]["lease_token"].as_i64().unwrap();
    let done = http
        .post(format!("{lb}/tasks/{gate}/complete"))
        .bearer_auth(TOKEN)
        .json(&json!({"lease_token": token, "result": {"open": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-workflow.png");
    let listed = tokio::task::spawn_blocking(move || {
        let _browser = browser;
        wait_for_value(&tab, &status_of("report"), |v| v == "succeeded");
        for step in ["gate", "hash-a", "hash-b", "hash-c"] {
            wait_for_value(&tab, &status_of(step), |v| v == "succeeded");
        }
        let listed = wait_for_value(
            &tab,
            "[...document.querySelectorAll('#workflow-list tr')].map(r => r.textContent).join('|')",
            |v| v.as_str().is_some_and(|s| s.contains("succeeded")),
        );
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        std::fs::write(&shot, png).unwrap();
        listed
    })
    .await
    .unwrap();
    assert!(
        listed.as_str().unwrap().contains("nightly-report"),
        "{listed}"
    );
    up.terminate();
}

/// The Queues panel pauses and resumes a queue from the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pauses_and_resumes_a_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let (up, lb) = start_up(&data_dir, &["--api-nodes", "1", "--workers", "1"]);
    let http = reqwest::Client::new();
    // A queue the panel lists: one task scheduled for later.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let task = json!({"type": "md5", "input": {"string": "x"}, "queue": "emails", "run_at": later});
    let resp = http
        .post(format!("{lb}/tasks"))
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let page = format!("{lb}/dashboard");
    let paused_on_page = "(document.querySelector('#queues tr[data-queue=\"emails\"]') || {dataset: {}}).dataset.paused";
    // The button's own click (a synthetic mouse click at its midpoint was
    // lost now and then while the panel re-laid out).
    let press = |tab: &Tab| {
        tab.find_element("#queues tr[data-queue=\"emails\"] button")
            .unwrap()
            .call_js_fn("function() { this.click(); }", vec![], false)
            .unwrap();
    };
    tokio::task::spawn_blocking(move || {
        let (_browser, tab) = open_page(&page);
        wait_for_value(&tab, paused_on_page, |v| v == "false");
        press(&tab);
        wait_for_value(&tab, paused_on_page, |v| v == "true");
        press(&tab);

        wait_for_value(&tab, paused_on_page, |v| v == "false");
    })
    .await
    .unwrap();
    let queues: Value = http
        .get(format!("{lb}/queues"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let emails = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "emails")
        .cloned()
        .unwrap();
    assert_eq!(emails["paused"], false, "{emails}");
    up.terminate();
}

/// Clicks the element `selector` finds, by its own `click()`.
fn click(tab: &Tab, selector: &str) {
    tab.find_element(selector)
        .unwrap_or_else(|e| panic!("no {selector}: {e}"))
        .call_js_fn("function() { this.click(); }", vec![], false)
        .unwrap();
}

/// The task browser: dead tasks filtered, one opened with its attempts'
/// errors, everything matching retried with the progress followed to done;
/// a workflow's step opened with its workflow, and its graph one click away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_browser_retries_what_matches_and_opens_a_task_and_its_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let (up, lb) = start_up_with_gate(&data_dir);
    let http = reqwest::Client::new();
    for i in 0..5 {
        let task = json!({"type": "flaky", "input": {"fail_times": 1, "n": i}, "max_attempts": 1, "queue": "partner"});
        let resp = http
            .post(format!("{lb}/tasks"))
            .json(&task)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    poll(Duration::from_secs(30), || async {
        let stats: Value = http
            .get(format!("{lb}/tasks/stats"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (stats["dead"] == 5).then_some(())
    })
    .await;
    let flow = json!({"name": "invoice-run", "steps": [
        {"id": "gate", "type": "gate", "input": {}},
        {"id": "report", "type": "noop", "input": {}, "depends_on": ["gate"]}
    ]});
    let accepted: Value = http
        .post(format!("{lb}/workflows"))
        .json(&flow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let workflow = accepted["workflow_id"].as_str().unwrap().to_string();
    let gate = accepted["steps"]["gate"].as_str().unwrap().to_string();

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-tasks.png");
    let page = format!("{lb}/dashboard/tasks?state=dead&queue=partner");
    let flow_page = format!("{lb}/dashboard/tasks?workflow={workflow}");
    tokio::task::spawn_blocking(move || {
        let (_browser, tab) = open_page(&page);
        let rows = "document.querySelectorAll('#task-table tr').length";
        wait_for_value(&tab, rows, |v| v.as_u64() == Some(5));
        // One dead task opened: its attempt and the error it died of.
        click(&tab, "#task-table tr td.id");
        let attempts = wait_for_value(
            &tab,
            "document.querySelector('#task-attempts').textContent",
            |v| v.as_str().is_some_and(|s| s.contains("fails on purpose")),
        );
        assert!(attempts.as_str().unwrap().contains("flaky"), "{attempts}");
        // Everything matching the filter, retried; the page follows it to done.
        click(&tab, "#select-matching");
        wait_for_value(&tab, "document.getElementById('selection').textContent", |v| {
            v.as_str().is_some_and(|s| s.contains("everything matching"))
        });
        click(&tab, "#bulk-retry");
        let progress = wait_for_value(
            &tab,
            "document.getElementById('bulk-progress').dataset.status === 'done' && document.getElementById('bulk-progress').textContent",
            |v| v.is_string(),
        );
        assert!(progress.as_str().unwrap().contains("5 changed"), "{progress}");
        wait_for_value(&tab, "document.querySelectorAll('#bulk-list tr').length", |v| v.as_u64() == Some(1));
        wait_for_value(&tab, "document.querySelector('#audit tr') && document.querySelector('#audit tr').dataset.action", |v| {
            v == "tasks.bulk_retry"
        });
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        std::fs::write(&shot, png).unwrap();

        // A workflow's steps, one opened with its workflow beside it.
        tab.navigate_to(&flow_page).unwrap().wait_until_navigated().unwrap();
        wait_for_value(&tab, rows, |v| v.as_u64() == Some(2));
        click(&tab, &format!("#task-table tr[data-task=\"{gate}\"] td.id"));
        wait_for_value(
            &tab,
            "document.querySelectorAll('#workflow-steps tr').length",
            |v| v.as_u64() == Some(2),
        );
        let state = wait_for_value(
            &tab,
            "document.querySelector('#task-fields dd[data-field=\"state\"]').textContent",
            |v| v.is_string(),
        );
        assert_eq!(state, "queued");
        click(&tab, "#workflow-link");
        let drawn = format!(
            "(window.weirDashboard && window.weirDashboard.workflows.graph || {{}}).id === '{workflow}' && document.querySelectorAll('#workflow-graph g.step').length"
        );
        wait_for_value(&tab, &drawn, |v| v.as_u64() == Some(2));
    })
    .await
    .unwrap();
    up.terminate();
}
