//! The TypeScript client (`clients/typescript`) passes its own end-to-end
//! tests, `npm test`, against this build's `weir up`: submit and wait,
//! workflows, events, Retry-After, the external worker loop (results,
//! permanent failures, heartbeats past a lease, a drain on SIGTERM), and
//! its generated types still matching `/openapi.json`. Node.js 20 and the
//! client's dev dependencies come from `scripts/ensure-node.sh` (CI runs it;
//! so does this test when they are missing).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest `npm test` may take (it takes about 20 s alone).
const DEADLINE: Duration = Duration::from_secs(600);

#[test]
fn the_typescript_client_passes_npm_test_against_weir_up() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/typescript");
    if !dir.join("node_modules/typescript").is_dir() {
        // As CI does; a fresh clone's `cargo test` brings them itself.
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-node.sh");
        let out = Command::new("bash").arg(&script).output().expect("bash");
        assert!(
            out.status.success(),
            "scripts/ensure-node.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let child = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: on a timeout, npm, node and every weir they
        // started go together.
        .process_group(0)
        .spawn()
        .expect("npm runs (scripts/ensure-node.sh installs Node.js 20 and npm)");
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("npm test's output"),
        Err(_) => {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            panic!("npm test did not finish within {DEADLINE:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "npm test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // node's test runner closes with "# pass N" and "# fail 0".
    let count = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    assert_eq!(count("# fail "), Some(0), "{stdout}\n{stderr}");
    assert!(
        count("# pass ").is_some_and(|n| n > 0),
        "no test ran:\n{stdout}\n{stderr}"
    );
}
