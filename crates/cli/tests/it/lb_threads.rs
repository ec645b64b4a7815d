//! The lb's serving threads share the work: with a few long-lived client
//! connections, the kernel's `SO_REUSEPORT` hash alone splits them unevenly
//! (36/28 of 64 and worse); accepted connections are handed to the least
//! loaded thread.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::processes::WeirProcess;
use crate::support::poll;
use crate::upgrades::{free_port, start_upstream, stats};

/// Sends `requests` keep-alive GETs on one connection, reading each answer.
async fn keep_alive_client(
    addr: String,
    requests: usize,
    hold: tokio::sync::watch::Receiver<bool>,
) {
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    for _ in 0..requests {
        stream
            .get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
    }
    // Held open until every client is done, so the counts are of all 64.
    let mut hold = hold;
    let _ = hold.wait_for(|done| *done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_long_lived_connections_split_evenly_over_two_threads() {
    let upstream = start_upstream().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let backend = format!("http://{upstream}");
    let args = [
        "lb",
        "--listen",
        &listen,
        "--threads",
        "2",
        "--backends",
        &backend,
    ];
    let (_lb, _) = WeirProcess::start(&args, "listening on");

    let (done, hold) = tokio::sync::watch::channel(false);
    let clients: Vec<_> = (0..64)
        .map(|_| tokio::spawn(keep_alive_client(listen.clone(), 50, hold.clone())))
        .collect();
    let threads = poll(Duration::from_secs(20), || async {
        let threads = stats(&base).await["threads"].as_array()?.clone();
        let open: u64 = threads
            .iter()
            .map(|t| t["connections"].as_u64().unwrap())
            .sum();
        let served: u64 = threads
            .iter()
            .map(|t| t["requests"].as_u64().unwrap())
            .sum();
        // The stats request's own connection is counted too.
        (open >= 64 && served >= 64 * 50).then_some(threads)
    })
    .await;
    let _ = done.send(true);
    for client in clients {
        client.await.unwrap();
    }

    let share = |key: &str| -> Vec<f64> {
        let counts: Vec<f64> = threads.iter().map(|t| t[key].as_f64().unwrap()).collect();
        let all: f64 = counts.iter().sum();
        counts.iter().map(|c| c / all).collect()
    };
    for key in ["connections", "requests"] {
        for part in share(key) {
            assert!(
                (0.45..=0.55).contains(&part),
                "{key} split {:?} over the threads: {threads:?}",
                share(key)
            );
        }
    }
}

/// `--max-connections` was a cap per accept loop: with two serving threads
/// (each with its own listener) the lb held up to twice as many client
/// connections as it was told to, and the memory the cap bounds with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_max_connections_bounds_the_process_not_each_thread() {
    let upstream = start_upstream().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let admin = format!("http://127.0.0.1:{}", free_port());
    let backend = format!("http://{upstream}");
    let args = [
        "lb",
        "--listen",
        &listen,
        "--admin-listen",
        admin.trim_start_matches("http://"),
        "--threads",
        "2",
        "--max-connections",
        "8",
        "--backends",
        &backend,
    ];
    let (_lb, _) = WeirProcess::start(&args, "listening on");

    // The kernel completes all 24 handshakes and hashes them over the two
    // threads' listeners; the lb takes 8 and leaves the rest in the backlog.
    let idle: Vec<_> = (0..24)
        .map(|_| std::net::TcpStream::connect(&listen).unwrap())
        .collect();
    let open = || async {
        let threads = stats(&admin).await["threads"].as_array().unwrap().clone();
        let counts: Vec<u64> = threads
            .iter()
            .map(|t| t["connections"].as_u64().unwrap())
            .collect();
        (counts.iter().sum::<u64>(), counts)
    };
    let first = poll(Duration::from_secs(20), || async {
        let (sum, counts) = open().await;
        (sum >= 8).then_some((sum, counts))
    })
    .await;
    assert_eq!(first.0, 8, "open connections per thread: {:?}", first.1);
    for _ in 0..20 {
        let (sum, counts) = open().await;
        assert_eq!(sum, 8, "open connections per thread: {counts:?}");
    }
    drop(idle);
}
