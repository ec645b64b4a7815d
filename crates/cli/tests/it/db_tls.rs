//! TLS to the database: `sslmode=verify-full` with `sslrootcert` on
//! `--database-url`, against a private PostgreSQL that takes nothing but
//! TLS, with a certificate made here.

use std::process::Command;

use crate::processes::{listening_url, post_json, WeirProcess};

/// A certificate for `localhost` and its key, as PEM.
fn certificate() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

use crate::processes::run_weir as weir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_connects_over_tls_and_refuses_a_server_it_cannot_verify() {
    let (cert, key) = certificate();
    let port = weir_testkit::start_tls_postgres(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("root.crt");
    std::fs::write(&ca, &cert).unwrap();
    let url = format!(
        "postgres://postgres@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.display()
    );

    let out = weir(&["migrate", "--database-url", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (api, line) = WeirProcess::start(
        &["api", "--listen", "127.0.0.1:0", "--database-url", &url],
        "listening on",
    );
    let base = listening_url(&line);
    let ready = reqwest::get(format!("{base}/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    // The server saw TLS on weir's connections.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let tls: bool = sqlx::query_scalar(
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'weir'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(tls, "a weir connection without TLS");
    api.terminate();

    // Another certificate authority: verify-full refuses the server.
    let (other, _) = certificate();
    let wrong = dir.path().join("other.crt");
    std::fs::write(&wrong, other).unwrap();
    let bad = url.replace(&ca.display().to_string(), &wrong.display().to_string());
    let out = weir(&["migrate", "--database-url", &bad]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "connected to a server it cannot verify"
    );
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    // And without TLS the server takes no connection at all.
    let plain = format!("postgres://postgres@localhost:{port}/postgres?sslmode=disable");
    assert!(!weir(&["migrate", "--database-url", &plain])
        .status
        .success());
}

/// A private Redis that takes TLS only, with the given PEM files; its port.
fn start_tls_redis(dir: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pidfile = dir.join("redis.pid");
    let status = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        .arg("--tls-ca-cert-file")
        .arg(cert)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--daemonize",
            "yes",
        ])
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .status()
        .unwrap();
    assert!(status.success());
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_reach_redis_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate();
    let (cert_file, key_file) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let port = start_tls_redis(dir.path(), &cert_file, &key_file);
    let redis = format!("rediss://localhost:{port}");
    let data = dir.path().join("data");
    // The server's certificate is trusted the way the system trust is
    // extended: SSL_CERT_FILE, read by the native roots weir verifies with.
    let args = [
        "up",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--ingest-mode",
        "buffered",
        "--redis-url",
        &redis,
    ];
    let (up, line) = WeirProcess::start_with_env(
        &args,
        &[("SSL_CERT_FILE", cert_file.to_str().unwrap())],
        "lb listening on",
    );
    let base = listening_url(&line);
    let events = serde_json::json!([{"id": "over-tls", "type": "t", "payload": {}}]);
    let (status, body) = post_json(&format!("{base}/write"), &events).await;
    assert_eq!(status, 202, "{body}");
    crate::support::poll(std::time::Duration::from_secs(30), || async {
        let count: serde_json::Value = reqwest::get(format!("{base}/messages/count"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (count["count"] == 1).then_some(())
    })
    .await;
    up.terminate();
    // Without the certificate trusted, nothing is accepted over it.
    let (up, line) = WeirProcess::start(&args, "lb listening on");
    let base = listening_url(&line);
    let (status, _) = post_json(&format!("{base}/write"), &events).await;
    assert_eq!(status, 503, "an unverified Redis was used");
    up.terminate();
    let pid = std::fs::read_to_string(dir.path().join("redis.pid")).unwrap();
    let _ = Command::new("kill").arg(pid.trim()).status();
}
