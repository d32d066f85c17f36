//! TCP request/response latency: 1-byte ping-pong on one TCP_NODELAY connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::RrResult;
use super::threads::{POLL, Stop};

/// Uncounted transactions first (connection warm-up, first-touch page faults).
const WARMUP: u32 = 10;

/// Runs `count` counted transactions; each must finish within `per_transaction`.
pub fn run_client(
    mut s: TcpStream,
    count: u32,
    per_transaction: Duration,
    stop: &Stop,
) -> io::Result<RrResult> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(per_transaction))?;
    s.set_write_timeout(Some(per_transaction))?;
    let mut samples = Vec::with_capacity(count as usize);
    let mut byte = [0u8; 1];
    let started = Instant::now();
    let mut counted_from = started;
    for i in 0..WARMUP + count {
        if stop.raised() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "stopped"));
        }
        if i == WARMUP {
            counted_from = Instant::now();
        }
        let t0 = Instant::now();
        s.write_all(&[i as u8])?;
        s.read_exact(&mut byte)?;
        if byte[0] != i as u8 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response does not match the request",
            ));
        }
        if i >= WARMUP {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    let total = counted_from.elapsed().as_secs_f64();
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(summarize(&mut samples, total))
}

/// Latency figures from raw samples (µs) over `total` seconds.
pub fn summarize(samples: &mut [f64], total: f64) -> RrResult {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let mean = if n == 0 {
        0.0
    } else {
        samples.iter().sum::<f64>() / n as f64
    };
    RrResult {
        count: n as u32,
        p50_us: percentile(samples, 0.50),
        p99_us: percentile(samples, 0.99),
        mean_us: mean,
        min_us: samples.first().copied().unwrap_or(0.0),
        max_us: samples.last().copied().unwrap_or(0.0),
        transactions_per_second: if total > 0.0 { n as f64 / total } else { 0.0 },
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Server side: echo every byte until EOF, `stop` or `hard_deadline`. Returns transactions.
pub fn serve(mut s: TcpStream, stop: &Stop, hard_deadline: Instant) -> u64 {
    if s.set_nodelay(true).is_err() || s.set_read_timeout(Some(POLL)).is_err() {
        return 0;
    }
    let mut buf = [0u8; 64];
    let mut n_total = 0u64;
    while !stop.raised() && Instant::now() < hard_deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    break;
                }
                n_total += n as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    // Warm-up transactions are the client's business; report counted ones.
    n_total.saturating_sub(u64::from(WARMUP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let r = summarize(&mut s, 2.0);
        assert_eq!(
            (r.p50_us, r.p99_us, r.min_us, r.max_us),
            (50.0, 99.0, 1.0, 100.0)
        );
        assert_eq!(r.mean_us, 50.5);
        assert_eq!(r.transactions_per_second, 50.0);
        assert_eq!(summarize(&mut [], 0.0).p99_us, 0.0);
        assert_eq!(summarize(&mut [7.0], 1.0).p50_us, 7.0);
    }

    #[test]
    fn ping_pong_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let stop = Stop::default();
        let srv = {
            let stop = stop.clone();
            std::thread::spawn(move || serve(s, &stop, Instant::now() + Duration::from_secs(10)))
        };
        let r = run_client(c, 500, Duration::from_secs(2), &stop).unwrap();
        assert_eq!(srv.join().unwrap(), 500);
        assert_eq!(r.count, 500);
        assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us);
        assert!(r.transactions_per_second > 100.0, "{r:?}");
    }

    #[test]
    fn silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let t0 = Instant::now();
        let e = run_client(c, 10, Duration::from_millis(200), &Stop::default()).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
}
