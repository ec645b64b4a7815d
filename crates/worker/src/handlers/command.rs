//! `handler = "command"`: a program in any language, run once per attempt.
//!
//! The input is written to its stdin as JSON; `WEIR_TASK_ID`, `WEIR_ATTEMPT`,
//! `WEIR_LEASE_TOKEN` (for `POST /workflows/{id}/steps`) and
//! `WEIR_TASK_TYPE` are in its environment, and `TRACEPARENT` (with
//! `TRACESTATE`) when the task is traced: the OpenTelemetry SDKs' variables
//! for a process to continue its caller's trace. Exit 0 succeeds with stdout
//! as the result (JSON, else `{"stdout": text}`); exit 65 (EX_DATAERR) is a
//! permanent failure; exit 75 (EX_TEMPFAIL), any other status, or death by a
//! signal is retried. A stderr line `weir-progress N` reports progress,
//! `weir-retry-after SECONDS` asks for the next attempt no sooner; the error
//! keeps stderr's tail. No shell is involved unless the user names one.
//!
//! The program runs in its own process group. When the attempt is stopped
//! (timeout, cancel, lost lease, drain), the whole group gets SIGTERM, then
//! SIGKILL after the type's `kill_grace`.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use weir_core::task_type::CommandSpec;

use crate::handler::{Handler, HandlerError, Job, Progress};

/// Exit status for input that will never work (sysexits.h).
const EX_DATAERR: i32 = 65;
/// Most bytes of stderr kept for the error.
const STDERR_TAIL_BYTES: usize = 2048;
/// Longest stderr line read whole (longer ones are cut).
const MAX_STDERR_LINE: usize = 8192;

pub struct CommandHandler {
    spec: CommandSpec,
}

impl CommandHandler {
    pub fn new(spec: CommandSpec) -> Self {
        CommandHandler { spec }
    }
}

/// Stops the process group when the attempt is dropped before the program
/// ended: SIGTERM now, SIGKILL after the grace.
struct GroupGuard {
    pgid: Option<i32>,
    grace: Duration,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        let group = Pid::from_raw(pgid);
        if killpg(group, Signal::SIGTERM).is_err() {
            return; // already gone
        }
        let grace = self.grace;
        // A plain thread: the runtime may be shutting down when this runs.
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            let _ = killpg(group, Signal::SIGKILL);
        });
    }
}

#[async_trait]
impl Handler for CommandHandler {
    async fn run(&self, job: Job) -> Result<Value, HandlerError> {
        let spec = &self.spec;
        let mut cmd = tokio::process::Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .envs(&spec.env)
            .env("WEIR_TASK_ID", job.id.to_string())
            .env("WEIR_ATTEMPT", job.attempt.to_string())
            .env("WEIR_LEASE_TOKEN", job.lease_token.to_string())
            .env("WEIR_TASK_TYPE", job.task_type.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        if let Some(trace) = &job.trace {
            cmd.env("TRACEPARENT", trace.traceparent());
            if let Some(state) = &trace.tracestate {
                cmd.env("TRACESTATE", state);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            HandlerError::retryable(format!("could not start {:?}: {e}", spec.argv[0]))
        })?;
        let mut guard = GroupGuard {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
            grace: spec.kill_grace,
        };
        let input = serde_json::to_vec(&job.input)
            .map_err(|e| HandlerError::permanent(format!("input: {e}")))?;
        let stdin = child.stdin.take();
        let write = async move {
            if let Some(mut stdin) = stdin {
                // A program that does not read its input closes the pipe: fine.
                let _ = stdin.write_all(&input).await;
            }
        };
        let stdout = read_bounded(child.stdout.take(), spec.max_output_bytes);
        let stderr = read_stderr(child.stderr.take(), &job.progress);
        let (_, stdout, (stderr, retry_after), status) =
            tokio::join!(write, stdout, stderr, child.wait());
        guard.disarm();
        let status = status.map_err(|e| HandlerError::retryable(format!("waiting: {e}")))?;
        let (out, overflowed) = stdout;
        let tail = || {
            let t = stderr.trim();
            if t.is_empty() {
                String::new()
            } else {
                format!(": {t}")
            }
        };
        match status.code() {
            Some(0) if overflowed => Err(HandlerError::permanent(format!(
                "stdout is over the limit of {} bytes",
                spec.max_output_bytes
            ))),
            Some(0) => Ok(result_of(&out)),
            Some(EX_DATAERR) => Err(HandlerError::permanent(format!(
                "exit status {EX_DATAERR} (bad input){}",
                tail()
            ))),
            Some(code) => Err(
                HandlerError::retryable(format!("exit status {code}{}", tail()))
                    .retry_after(retry_after),
            ),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let signal = status.signal().unwrap_or_default();
                Err(HandlerError::retryable(format!(
                    "killed by signal {signal}{}",
                    tail()
                )))
            }
        }
    }
}

/// stdout as a result: JSON if it is JSON, else its text.
fn result_of(out: &[u8]) -> Value {
    let text = String::from_utf8_lossy(out);
    if text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text).unwrap_or_else(|_| json!({ "stdout": text }))
}

/// Reads up to `limit` bytes and drains the rest (so the program never
/// blocks on a full pipe); true when something was dropped.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut pipe) = pipe else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut overflowed = false;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, overflowed),
            Ok(n) => {
                let room = limit.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                overflowed |= n > room;
            }
        }
    }
}

/// Reads stderr line by line: `weir-progress N` lines report progress,
/// `weir-retry-after S` asks for a later retry, the rest is kept as a
/// bounded tail for the error.
async fn read_stderr(
    pipe: Option<impl AsyncRead + Unpin>,
    progress: &Progress,
) -> (String, Option<Duration>) {
    let Some(pipe) = pipe else {
        return (String::new(), None);
    };
    let mut retry_after = None;
    let mut reader = BufReader::new(pipe);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut tail_len = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if let Some(n) = text.strip_prefix("weir-progress ") {
            if let Ok(p) = n.trim().parse::<u8>() {
                progress.set(p);
                continue;
            }
        }
        if let Some(s) = text.strip_prefix("weir-retry-after ") {
            if let Ok(secs) = s.trim().parse::<f64>() {
                retry_after = Duration::try_from_secs_f64(secs).ok();
                continue;
            }
        }
        tail_len += text.len() + 1;
        tail.push_back(text);
        while tail_len > STDERR_TAIL_BYTES && tail.len() > 1 {
            tail_len -= tail.pop_front().map_or(0, |l| l.len() + 1);
        }
    }
    let joined = Vec::from(tail).join("\n");
    // One huge last line is cut from the front, on a character boundary.
    let mut start = joined.len().saturating_sub(STDERR_TAIL_BYTES);
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    (joined[start..].to_string(), retry_after)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio_util::sync::CancellationToken;
    use weir_core::{TaskId, TaskType};

    use super::*;

    fn handler(script: &str) -> CommandHandler {
        CommandHandler::new(CommandSpec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::new(),
            cwd: None,
            kill_grace: Duration::from_millis(200),
            max_output_bytes: 64,
        })
    }

    fn job(input: Value) -> Job {
        Job {
            id: TaskId::new(),
            task_type: TaskType::new("script").unwrap(),
            input,
            attempt: 2,
            max_attempts: 3,
            timeout: Duration::from_secs(10),
            progress: Progress::default(),
            cancel: CancellationToken::new(),
            lease_token: 1,
            workflow: Default::default(),
            trace: None,
        }
    }

    #[tokio::test]
    async fn a_traced_attempt_gives_the_program_its_trace_context() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        // Which of the two variables hold what the attempt was given.
        let h = handler(&format!(
            r#"printf '[%s,%s]' "$([ "$TRACEPARENT" = {parent} ] && echo 1 || echo 0)" "$([ "$TRACESTATE" = k=v ] && echo 1 || echo 0)""#
        ));
        let mut traced = job(json!({}));
        traced.trace = weir_trace::TraceContext::parse(parent.as_bytes(), Some(b"k=v"));
        assert_eq!(h.run(traced).await.unwrap(), json!([1, 1]));
        // Untraced: neither variable is set.
        let h = handler(r#"printf '[%s]' "${TRACEPARENT:-0}${TRACESTATE}""#);
        assert_eq!(h.run(job(json!({}))).await.unwrap(), json!([0]));
    }

    #[tokio::test]
    async fn stdin_in_stdout_out_with_the_task_in_the_environment() {
        let h = handler(r#"read line; printf '{"got":%s,"attempt":%s}' "$line" "$WEIR_ATTEMPT""#);
        let out = h.run(job(json!({"x": 1}))).await.unwrap();
        assert_eq!(out, json!({"got": {"x": 1}, "attempt": 2}));
    }

    #[tokio::test]
    async fn exit_codes_pick_the_outcome() {
        let e = handler("echo nope >&2; exit 65")
            .run(job(json!({})))
            .await
            .unwrap_err();
        assert!(e.permanent, "{e:?}");
        assert!(e.message.contains("nope"), "{e:?}");
        let e = handler("exit 75").run(job(json!({}))).await.unwrap_err();
        assert!(!e.permanent);
        let e = handler("echo 'weir-retry-after 30' >&2; exit 75")
            .run(job(json!({})))
            .await
            .unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
        let e = handler("exit 3").run(job(json!({}))).await.unwrap_err();
        assert!(!e.permanent && e.message.contains("exit status 3"), "{e:?}");
        let e = handler("kill -9 $$").run(job(json!({}))).await.unwrap_err();
        assert!(!e.permanent && e.message.contains("signal 9"), "{e:?}");
    }

    #[tokio::test]
    async fn progress_lines_report_and_output_is_bounded() {
        let j = job(json!({}));
        let progress = j.progress.clone();
        let out = handler("echo 'weir-progress 40' >&2; echo plain text")
            .run(j)
            .await
            .unwrap();
        assert_eq!(progress.get(), Some(40));
        assert_eq!(out, json!({"stdout": "plain text\n"}));
        let e = handler("head -c 100000 /dev/zero | tr '\\0' x")
            .run(job(json!({})))
            .await
            .unwrap_err();
        assert!(e.permanent && e.message.contains("over the limit"), "{e:?}");
    }

    #[tokio::test]
    async fn a_dropped_attempt_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The child of the shell ignores SIGTERM: only the SIGKILL after the
        // grace stops it.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; exec sleep 30' & wait",
            pidfile.display()
        );
        let h = handler(&script);
        let attempt = tokio::time::timeout(Duration::from_millis(500), h.run(job(json!({}))));
        assert!(attempt.await.is_err(), "the attempt should time out");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} survived"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
    }
}
