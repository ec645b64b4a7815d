//! The deploy files cannot drift from the code: every Compose service and
//! rendered Kubernetes object is checked against the binary itself — each
//! command and flag by `weir <role> --check-config`, each `WEIR_*` variable
//! against the role's own `--help`, each probe path and port against what
//! the role serves when started from those very arguments, every metric a
//! Grafana query or a Prometheus rule names against what the roles export,
//! the KEDA query against a migrated database — and Compose's roles against
//! Kubernetes'. The alert rules pass `promtool check rules` and their unit
//! tests (`promtool test rules`), which cover every alert.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::processes::{listening_url, migrated_database, post_json, WeirProcess};
use crate::support::poll;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every object `kubectl kustomize DIR` renders.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", &root().join(dir).to_string_lossy()])
        .output()
        .expect("kubectl runs (scripts/ensure-deploy-tools.sh installs it)");
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8_lossy(&out.stdout))
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let mut v: serde_yaml_ng::Value = serde::Deserialize::deserialize(doc).unwrap();
            v.apply_merge().unwrap();
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn weir(args: &[String], env: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .envs(env)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// The `WEIR_*` variables `weir ROLE --help` names.
fn role_vars(role: &str) -> BTreeSet<String> {
    let help = weir(&[role.into(), "--help".into()], &BTreeMap::new());
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    text.split("env: ")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

/// Runs `weir ARGS --check-config` with `env` and checks each `WEIR_*`
/// variable is one the role reads (`WEIR_X_FILE` stands for `WEIR_X`;
/// `WEIR_HEALTH_URL` is the image's health check's, not weir's).
fn check_role(what: &str, args: &[String], env: &BTreeMap<String, String>) {
    let role = args[0].as_str();
    let known = role_vars(role);
    for var in env.keys().filter(|k| k.starts_with("WEIR_")) {
        let var = var.strip_suffix("_FILE").unwrap_or(var);
        assert!(
            var == "WEIR_HEALTH_URL" || known.contains(var),
            "{what}: `weir {role}` reads no {var}"
        );
    }
    let mut args = args.to_vec();
    args.push("--check-config".into());
    let out = weir(&args, env);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("configuration ok"),
        "{what}: weir {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The paths each role serves its probes on, as the manifests must name them.
fn probe_paths(role: &str) -> [&'static str; 2] {
    match role {
        "lb" => ["/lb/health/live", "/lb/health/ready"],
        _ => ["/health/live", "/health/ready"],
    }
}

/// The port a role listens on, from its arguments.
fn listen_port(args: &[String]) -> Option<u16> {
    let flag = if args[0] == "worker" {
        "--metrics-listen"
    } else {
        "--listen"
    };
    let at = args.iter().position(|a| a == flag)?;
    args[at + 1].rsplit(':').next()?.parse().ok()
}

/// A rendered container: its role's arguments, environment (Secret values
/// and ConfigMaps filled in), and probes as (path, port).
struct Container {
    what: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    probes: Vec<(String, u16)>,
    grace: Option<u64>,
    pre_stop: bool,
    /// Where Prometheus scrapes it (the pod's annotations): path and port.
    scrape: Option<(String, u16)>,
}

fn containers(objects: &[Value]) -> Vec<Container> {
    let by_name = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let mut found = Vec::new();
    for o in objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job")
    {
        let pod = &o["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let mut env = BTreeMap::new();
        for from in c["envFrom"].as_array().into_iter().flatten() {
            let map = by_name("ConfigMap", from["configMapRef"]["name"].as_str().unwrap());
            for (k, v) in map["data"].as_object().unwrap() {
                env.insert(k.clone(), v.as_str().unwrap().to_string());
            }
        }
        for e in c["env"].as_array().into_iter().flatten() {
            let value = match e["valueFrom"]["secretKeyRef"].as_object() {
                Some(r) => {
                    let secret = by_name("Secret", r["name"].as_str().unwrap());
                    secret["stringData"][r["key"].as_str().unwrap()]
                        .as_str()
                        .unwrap_or_else(|| panic!("secret key {r:?}"))
                        .to_string()
                }
                None => e["value"].as_str().unwrap().to_string(),
            };
            env.insert(e["name"].as_str().unwrap().to_string(), value);
        }
        let ports: BTreeMap<String, u16> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_u64().unwrap() as u16,
                )
            })
            .collect();
        let probes = ["livenessProbe", "readinessProbe"]
            .iter()
            .filter_map(|p| c[*p]["httpGet"].as_object())
            .map(|g| {
                let port = match &g["port"] {
                    Value::String(name) => ports[name],
                    n => n.as_u64().unwrap() as u16,
                };
                (g["path"].as_str().unwrap().to_string(), port)
            })
            .collect();
        found.push(Container {
            what: format!("{} {}", o["kind"], o["metadata"]["name"]),
            args: c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
            env,
            probes,
            grace: pod["terminationGracePeriodSeconds"].as_u64(),
            pre_stop: !c["lifecycle"]["preStop"].is_null(),
            scrape: o["spec"]["template"]["metadata"]["annotations"]
                .as_object()
                .filter(|a| a["prometheus.io/scrape"] == "true")
                .map(|a| {
                    let port = a["prometheus.io/port"].as_str().unwrap().parse().unwrap();
                    (a["prometheus.io/path"].as_str().unwrap().to_string(), port)
                }),
        });
    }
    found
}

fn seconds(s: &str) -> u64 {
    s.trim_end_matches('s').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_manifests_render_validate_and_match_the_binary() {
    let (_db, url) = migrated_database().await;
    for dir in [
        "deploy/k8s/base",
        "deploy/k8s/overlays/small",
        "deploy/k8s/overlays/large",
    ] {
        let objects = kustomize(dir);
        // Schemas of the Kubernetes release kubernetes-validate bundles;
        // KEDA's kinds are checked below instead.
        let core: Vec<&Value> = objects
            .iter()
            .filter(|o| !o["apiVersion"].as_str().unwrap().starts_with("keda.sh/"))
            .collect();
        let listed = tempfile::NamedTempFile::new().unwrap();
        let docs: Vec<String> = core
            .iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect();
        std::fs::write(listed.path(), docs.join("\n---\n")).unwrap();
        let validated = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(listed.path())
            .output()
            .expect("kubernetes-validate runs (scripts/ensure-deploy-tools.sh)");
        assert!(
            validated.status.success(),
            "{dir}: {}{}",
            String::from_utf8_lossy(&validated.stdout),
            String::from_utf8_lossy(&validated.stderr)
        );

        let roles: BTreeSet<String> = containers(&objects)
            .iter()
            .map(|c| c.args[0].clone())
            .collect();
        assert_eq!(
            roles,
            ["api", "lb", "migrate", "worker"].map(String::from).into()
        );
        for c in containers(&objects) {
            check_role(&format!("{dir}: {}", c.what), &c.args, &c.env);
            let role = c.args[0].as_str();
            if role == "migrate" {
                continue;
            }
            let port = listen_port(&c.args).unwrap_or_else(|| panic!("{}: no listen port", c.what));
            let paths: Vec<&str> = c.probes.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(paths, probe_paths(role), "{dir}: {}", c.what);
            assert!(
                c.probes.iter().all(|(_, p)| *p == port),
                "{dir}: {} probes another port",
                c.what
            );
            // The pod outlives its drain: preStop, then the shutdown grace.
            let drain = c.env.get("WEIR_SHUTDOWN_GRACE").map_or(30, |g| seconds(g));
            let pre_stop = if c.pre_stop { 5 } else { 0 };
            assert!(
                c.grace.unwrap() > drain + pre_stop,
                "{dir}: {} is killed mid-drain",
                c.what
            );
        }

        // KEDA: it scales a Deployment that exists, with a query that runs.
        for so in objects.iter().filter(|o| o["kind"] == "ScaledObject") {
            let target = so["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
            assert!(objects
                .iter()
                .any(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == target));
            let query = so["spec"]["triggers"][0]["metadata"]["query"]
                .as_str()
                .unwrap();
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let depth: i64 = sqlx::query_scalar(query)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(depth, 0, "{dir}: {query}");
        }
    }
}

/// Compose's services with secrets read from files of dummy values (the
/// URLs point at a closed port: `--check-config` connects to nothing).
/// One weir service of compose.yaml.
struct Service {
    name: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    spec: Value,
}

fn compose_services() -> Vec<Service> {
    let text = std::fs::read_to_string(root().join("deploy/compose.yaml")).unwrap();
    let compose = yaml_docs(&text).remove(0);
    let secrets = tempfile::tempdir().unwrap().keep();
    let mut found = Vec::new();
    for (name, s) in compose["services"].as_object().unwrap() {
        if s["image"] != "weir:local" {
            continue;
        }
        let args: Vec<String> = s["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().into())
            .collect();
        let mut env = BTreeMap::new();
        for (k, v) in s["environment"].as_object().unwrap() {
            let mut v = v.as_str().unwrap().to_string();
            if let Some(secret) = v.strip_prefix("/run/secrets/") {
                assert!(
                    s["secrets"].as_array().unwrap().iter().any(|x| x == secret),
                    "service {name} reads secret {secret} it is not given"
                );
                assert!(compose["secrets"][secret].is_object(), "no secret {secret}");
                let path = secrets.join(secret);
                let value = if secret.contains("url") {
                    "postgres://weir_app:pw@127.0.0.1:1/weir"
                } else {
                    "dummy-token"
                };
                std::fs::write(&path, value).unwrap();
                v = path.to_string_lossy().into_owned();
            }
            env.insert(k.clone(), v);
        }
        found.push(Service {
            name: name.clone(),
            args,
            env,
            spec: s.clone(),
        });
    }
    found
}

#[test]
fn compose_services_match_the_binary_and_the_kubernetes_roles() {
    let services = compose_services();
    let k8s = containers(&kustomize("deploy/k8s/base"));
    let mut roles = BTreeSet::new();
    for Service {
        name,
        args,
        env,
        spec: s,
    } in &services
    {
        check_role(&format!("compose service {name}"), args, env);
        let role = args[0].as_str();
        roles.insert(role.to_string());
        if role == "migrate" {
            assert!(
                env["WEIR_DATABASE_URL_FILE"].ends_with("db_owner_url"),
                "migrate runs as the owner"
            );
            continue;
        }
        if role != "lb" {
            let url = &env["WEIR_DATABASE_URL_FILE"];
            assert!(
                url.ends_with("db_app_url"),
                "{name} connects as the app role"
            );
        }
        // Its health check probes the readiness path Kubernetes probes, on
        // the port the command listens on; the image's check asks the same.
        let test: Vec<&str> = s["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(&test[..3], ["CMD", "weir", "health"], "{name}");
        let url = test[3];
        assert_eq!(
            env["WEIR_HEALTH_URL"], url,
            "{name}: the image's check differs"
        );
        let port = listen_port(args).unwrap();
        assert_eq!(
            url,
            format!("http://127.0.0.1:{port}{}", probe_paths(role)[1]),
            "{name}"
        );
        let pod = k8s.iter().find(|c| c.args[0] == role).unwrap();
        assert!(
            pod.probes.iter().any(|(p, _)| url.ends_with(p.as_str())),
            "{name} vs {}",
            pod.what
        );
        let stop = seconds(s["stop_grace_period"].as_str().unwrap());
        let drain = args
            .iter()
            .position(|a| a == "--shutdown-grace")
            .map_or(30, |i| seconds(&args[i + 1]));
        assert!(stop > drain, "{name}: stopped before its drain ends");
    }
    let k8s_roles: BTreeSet<String> = k8s.iter().map(|c| c.args[0].clone()).collect();
    assert_eq!(
        roles, k8s_roles,
        "Compose and Kubernetes run different roles"
    );
    let replicas = &services.iter().find(|s| s.name == "api").unwrap().spec["deploy"]["replicas"];
    assert_eq!(replicas, 3, "the seeds' topology has 3 API nodes");
}

/// Replaces each `0.0.0.0:PORT` by an ephemeral loopback address.
fn local(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a.starts_with("0.0.0.0:") {
                "127.0.0.1:0".into()
            } else {
                a.clone()
            }
        })
        .collect()
}

/// Starts `weir ARGS` with `env`; the base URL it printed.
fn start(args: &[String], env: &[(&str, &str)], marker: &str) -> (WeirProcess, String) {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (p, line) = WeirProcess::start_with_env(&argv, env, marker);
    (
        p,
        listening_url(&line)
            .trim_end_matches("/metrics")
            .to_string(),
    )
}

/// A PromQL expression without its label matchers (`{…}`) and grouping
/// clauses (`by (…)`): what is left names metrics and functions only.
fn metric_names_only(expr: &str) -> String {
    let mut out = String::new();
    let mut skip_until: Option<char> = None;
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        match skip_until {
            Some(end) if c == end => skip_until = None,
            Some(_) => {}
            None if c == '{' => skip_until = Some('}'),
            None if rest.starts_with("by (") => skip_until = Some(')'),
            None => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The metrics a PromQL expression names: words with weir's prefixes, and
/// recording rules' names (`level:metric:operation`, with a colon).
fn named_metrics(expr: &str) -> BTreeSet<String> {
    metric_names_only(expr)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| {
            ["weir_", "worker_", "http_server_", "weir:"]
                .iter()
                .any(|p| word.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

/// deploy/prometheus/alerts.yaml's rules, each group's in order.
fn prometheus_rules() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap();
    let file = yaml_docs(&text).remove(0);
    file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

/// `promtool ARGS`, which must succeed (Debian's prometheus package;
/// scripts/ensure-deploy-tools.sh).
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (scripts/ensure-deploy-tools.sh installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_alerts_pass_promtool_and_every_alert_is_tested() {
    let dir = root().join("deploy/prometheus");
    let (rules_file, tests_file) = (dir.join("alerts.yaml"), dir.join("alerts_test.yaml"));
    promtool(&["check", "rules", &rules_file.to_string_lossy()]);
    promtool(&["test", "rules", &tests_file.to_string_lossy()]);

    // Every alert has a case where it fires and one where it must not.
    let text = std::fs::read_to_string(&tests_file).unwrap();
    let cases = yaml_docs(&text).remove(0);
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in cases["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
    {
        let name = case["alertname"].as_str().unwrap().to_string();
        match case["exp_alerts"].as_array() {
            Some(expected) if !expected.is_empty() => fires.insert(name),
            _ => quiet.insert(name),
        };
    }
    let deploy_doc = std::fs::read_to_string(root().join("docs/DEPLOY.md")).unwrap();
    let rules = prometheus_rules();
    let alerts: Vec<&Value> = rules.iter().filter(|r| r["alert"].is_string()).collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for rule in alerts {
        let name = rule["alert"].as_str().unwrap();
        assert!(fires.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
        assert!(rule["for"].is_string(), "{name}: no `for`");
        assert!(
            rule["labels"]["severity"].is_string(),
            "{name}: no severity"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation].is_string(),
                "{name}: no {annotation}"
            );
        }
        // Its runbook is the section of docs/DEPLOY.md named after it.
        let anchor = name.to_lowercase();
        assert_eq!(
            rule["annotations"]["runbook_url"],
            format!("docs/DEPLOY.md#{anchor}"),
            "{name}"
        );
        assert!(
            deploy_doc.lines().any(|l| l == format!("### {name}")),
            "docs/DEPLOY.md has no runbook section `### {name}`"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_probe_grafana_and_alert_metric_is_one_the_roles_serve() {
    let (_db, url) = migrated_database().await;
    let k8s = containers(&kustomize("deploy/k8s/base"));
    let role = |r: &str| k8s.iter().find(|c| c.args[0] == r).unwrap();
    let db = [("WEIR_DATABASE_URL", url.as_str())];
    let (_api, api) = start(&local(&role("api").args), &db, "listening on");
    let (_worker, worker) = start(&local(&role("worker").args), &db, "serving metrics on");
    // With a certificate, so the TLS series exist too.
    let certs = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("lb.crt"), certs.path().join("lb.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let mut lb_args = local(&role("lb").args);
    lb_args.extend(
        [
            "--backends",
            api.as_str(),
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let (_lb, lb) = start(
        &lb_args,
        &[("WEIR_ADMIN_TOKEN", "t")],
        "listening on http://",
    );

    let http = reqwest::Client::new();
    for (base, r) in [(&api, "api"), (&worker, "worker"), (&lb, "lb")] {
        for c in k8s.iter().filter(|c| c.args[0] == r) {
            for (path, _) in &c.probes {
                poll(Duration::from_secs(30), || async {
                    let resp = http.get(format!("{base}{path}")).send().await.ok()?;
                    (resp.status() == 200).then_some(())
                })
                .await;
            }
        }
    }

    // Traffic, so every series exists: a task done, one waiting, an event.
    let (_, done) = post_json(&format!("{lb}/hash/md5"), &json!({"string": "grafana"})).await;
    crate::processes::wait_all_succeeded(&lb, &[done["task_id"].as_str().unwrap().to_string()])
        .await;
    let later = json!({"type": "sleep", "input": {"ms": 1}, "run_at": "2099-01-01T00:00:00Z"});
    assert_eq!(post_json(&format!("{lb}/tasks"), &later).await.0, 202);
    let events = json!([{"id": "grafana-1", "type": "t", "payload": {}}]);
    assert_eq!(post_json(&format!("{lb}/write"), &events).await.0, 202);

    // Scraped where the pods' annotations say: the port each role listens
    // on, a path it serves.
    let mut pages = Vec::new();
    for (base, r) in [(&api, "api"), (&worker, "worker"), (&lb, "lb")] {
        let c = role(r);
        let (path, port) = c
            .scrape
            .clone()
            .unwrap_or_else(|| panic!("{} is not scraped", c.what));
        assert_eq!(
            Some(port),
            listen_port(&c.args),
            "{}: scraped on another port",
            c.what
        );
        pages.push(format!("{base}{path}"));
    }
    let mut exported = BTreeSet::new();
    for page in pages {
        let resp = http.get(&page).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{page}");
        let text = resp.text().await.unwrap();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            exported.insert(name);
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/weir.json")).unwrap(),
    )
    .unwrap();
    let mut named = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            named.extend(named_metrics(target["expr"].as_str().unwrap()));
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    for metric in &named {
        assert!(
            exported.contains(metric),
            "the dashboard queries {metric}, which no role exports: {exported:?}"
        );
    }

    // Every metric a Prometheus rule names, but the rules' own records.
    let rules = prometheus_rules();
    let recorded: BTreeSet<&str> = rules.iter().filter_map(|r| r["record"].as_str()).collect();
    let mut named = BTreeSet::new();
    for rule in &rules {
        named.extend(named_metrics(rule["expr"].as_str().unwrap()));
    }
    assert!(named.len() >= 10, "{named:?}");
    for metric in &named {
        assert!(
            exported.contains(metric) || recorded.contains(metric.as_str()),
            "deploy/prometheus/alerts.yaml names {metric}, which no role exports: {exported:?}"
        );
    }
}
