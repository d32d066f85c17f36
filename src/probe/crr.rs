//! TCP connection rate, as netperf's TCP_CRR: every transaction opens a new connection, sends
//! its preamble and a 1-byte request, reads the 1-byte response and closes (the client closes
//! first, so TIME_WAIT stays on the client, as with netperf). Through an overlay or a Service
//! this is where connection setup, conntrack and NAT costs show, which bulk TCP hides.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::RrResult;
use super::threads::Stop;
use super::wire::{Preamble, StreamKind};

/// Opens, requests, reads the answer and closes connections for `duration`; each transaction
/// (connect included) must finish within `per_transaction`. The first failure ends the test:
/// a path that drops one connection in a thousand is broken, not slow.
pub fn run_client(
    addr: SocketAddr,
    cookie: u64,
    duration: Duration,
    per_transaction: Duration,
    stop: &Stop,
) -> io::Result<RrResult> {
    let mut request = [0u8; Preamble::LEN + 1];
    request[..Preamble::LEN].copy_from_slice(
        &Preamble {
            kind: StreamKind::Crr,
            cookie,
        }
        .encode(),
    );
    let mut samples = Vec::new();
    let started = Instant::now();
    let deadline = started + duration;
    let mut i: u8 = 0;
    while Instant::now() < deadline {
        if stop.raised() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "stopped"));
        }
        let t0 = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, per_transaction).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("connection {} to {addr}: {e}", samples.len() + 1),
            )
        })?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(per_transaction))?;
        s.set_write_timeout(Some(per_transaction))?;
        i = i.wrapping_add(1);
        request[Preamble::LEN] = i;
        s.write_all(&request)?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte)?;
        if byte[0] != i {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response does not match the request",
            ));
        }
        drop(s);
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    let total = started.elapsed().as_secs_f64();
    Ok(super::rr::summarize(&mut samples, total))
}

/// Server side of one connection whose preamble was read: answer the request byte and wait
/// (bounded) for the client to close. `true` when a whole transaction was served.
pub async fn serve(mut s: tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.set_nodelay(true);
    let served = async {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        s.write_all(&b).await?;
        // EOF from the client ends the transaction.
        let mut rest = [0u8; 16];
        while s.read(&mut rest).await? > 0 {}
        io::Result::Ok(())
    };
    matches!(tokio::time::timeout(wait, served).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_short_connections_on_loopback() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = served.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut pre = [0u8; Preamble::LEN];
                    s.read_exact(&mut pre).await.unwrap();
                    let p = Preamble::decode(&pre).unwrap();
                    assert_eq!((p.kind, p.cookie), (StreamKind::Crr, 42));
                    if serve(s, Duration::from_secs(2)).await {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        let r = tokio::task::spawn_blocking(move || {
            run_client(
                addr,
                42,
                Duration::from_millis(300),
                Duration::from_secs(2),
                &Stop::default(),
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert!(r.count > 10, "{r:?}");
        assert!(r.transactions_per_second > 30.0, "{r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = served.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            n + 2 >= u64::from(r.count),
            "served {n}, client {}",
            r.count
        );
    }

    #[test]
    fn a_refused_connection_fails_the_test() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = run_client(
            addr,
            1,
            Duration::from_millis(200),
            Duration::from_secs(1),
            &Stop::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        assert!(e.to_string().contains("connection 1"), "{e}");
    }
}
