//! The container image (`Dockerfile`): its runtime stage built with podman
//! around this build's binary (`scripts/container-image.sh`), run as a user
//! would run it, reached on `/health`, judged healthy by its own
//! HEALTHCHECK (no curl inside), non-root, and stopped cleanly by SIGTERM.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::poll;

/// This sandbox's workarounds only: no cgroup v2 delegation, no raising
/// rlimits. Nothing here is needed on a normal container host.
const RUN_FLAGS: &[&str] = &["--runtime", "runc", "--cgroup-manager", "cgroupfs"];
const LIMITS: &[&str] = &[
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=1000:1000",
];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Removes the container and the image, even when the test fails.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", &self.container]);
        let _ = podman(&["rmi", "-f", &self.image]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_is_healthy_by_its_own_check_and_runs_as_non_root() {
    let id = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let image = format!("localhost/weir-test:{id}");
    let container = format!("weir-test-{id}");
    let _cleanup = Cleanup {
        container: container.clone(),
        image: image.clone(),
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/container-image.sh"
    );
    let built = Command::new("bash")
        .args([script, env!("CARGO_BIN_EXE_weir"), &image])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "building the image: {}",
        text(&built)
    );

    let config = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Healthcheck.Test}}",
        &image,
    ]);
    let config = text(&config);
    let fields: Vec<&str> = config.trim().split('|').collect();
    assert_eq!(fields[0], "10001:10001", "{config}");
    assert_eq!(fields[1], r#"["weir"]"#, "{config}");
    assert!(fields[2].contains("weir health"), "{config}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let health_url = format!("WEIR_HEALTH_URL=http://{listen}/lb/health/ready");
    let mut run = vec!["run", "-d", "--name", &container, "--network", "host"];
    run.extend_from_slice(LIMITS);
    run.extend_from_slice(&["-e", &health_url, &image, "up", "--listen", &listen]);
    let started = podman(&[RUN_FLAGS, &run[..]].concat());
    assert!(started.status.success(), "podman run: {}", text(&started));

    let http = reqwest::Client::new();
    poll(Duration::from_secs(60), || async {
        let resp = http
            .get(format!("http://{listen}/health"))
            .send()
            .await
            .ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    // The image's own HEALTHCHECK, run the way the engine runs it.
    poll(Duration::from_secs(30), || async {
        podman(&["healthcheck", "run", &container])
            .status
            .success()
            .then_some(())
    })
    .await;
    let uid = podman(&["exec", &container, "id", "-u"]);
    assert_eq!(text(&uid).trim(), "10001");

    let stopped = podman(&["stop", "-t", "20", &container]);
    assert!(stopped.status.success(), "{}", text(&stopped));
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &container]);
    assert_eq!(text(&code).trim(), "0", "SIGTERM did not end weir cleanly");
}
