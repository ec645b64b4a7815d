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
