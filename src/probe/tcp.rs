//! TCP bulk-transfer data path: blocking sockets, 128 KiB writes/reads, one OS thread per
//! stream (iperf3's defaults), kernel buffer autotuning left alone.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sockopt;
use super::threads::{POLL, Stop};
use super::wire::{Preamble, StreamKind};

/// iperf3's default TCP block size.
pub const BLOCK: usize = 128 * 1024;

/// What the sending side did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SendSummary {
    pub bytes: u64,
    pub retransmits: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data connection to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("data stream {stream}: {source}")]
    Stream { stream: u32, source: io::Error },
    #[error("sender thread {0} died")]
    Thread(u32),
}

/// Opens a data connection and sends its preamble.
pub fn connect(
    addr: SocketAddr,
    kind: StreamKind,
    cookie: u64,
    timeout: Duration,
) -> Result<TcpStream, DataError> {
    let fail = |source| DataError::Connect { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    s.set_write_timeout(Some(timeout)).map_err(fail)?;
    s.write_all(&Preamble { kind, cookie }.encode())
        .map_err(fail)?;
    Ok(s)
}

/// Connects `streams` data connections, then sends on all of them for `duration` (the clock
/// starts once all are connected) and closes them.
pub fn send_streams(
    addr: SocketAddr,
    cookie: u64,
    streams: u32,
    duration: Duration,
    connect_timeout: Duration,
    stop: &Stop,
) -> Result<SendSummary, DataError> {
    let mut socks = Vec::with_capacity(streams as usize);
    for _ in 0..streams {
        socks.push(connect(addr, StreamKind::TcpData, cookie, connect_timeout)?);
    }
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("probe-tx{i}"))
                .spawn(move || send_until(s, deadline, &stop))
                .map_err(|source| DataError::Stream {
                    stream: i as u32,
                    source,
                })
        })
        .collect();
    let mut total = SendSummary {
        bytes: 0,
        retransmits: Some(0),
    };
    let mut first_err = None;
    for (i, h) in handles.into_iter().enumerate() {
        let r = match h {
            Ok(h) => h
                .join()
                .map_err(|_| DataError::Thread(i as u32))
                .and_then(|r| {
                    r.map_err(|source| DataError::Stream {
                        stream: i as u32,
                        source,
                    })
                }),
            Err(e) => Err(e),
        };
        match r {
            Ok(s) => {
                total.bytes += s.bytes;
                total.retransmits = total.retransmits.zip(s.retransmits).map(|(a, b)| a + b);
            }
            Err(e) => {
                // Stop the siblings now rather than at the deadline.
                stop.raise();
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

fn send_until(mut s: TcpStream, deadline: Instant, stop: &Stop) -> io::Result<SendSummary> {
    s.set_write_timeout(Some(POLL))?;
    let block = vec![0x5a_u8; BLOCK];
    let mut bytes = 0u64;
    while !stop.raised() && Instant::now() < deadline {
        match s.write(&block) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes += n as u64,
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let retransmits = sockopt::tcp_total_retrans(&s).ok();
    // FIN after the queued data: the receiver's EOF marks the end of its measurement.
    let _ = s.shutdown(Shutdown::Write);
    Ok(SendSummary { bytes, retransmits })
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The receiving side's shared clock: the measurement starts at the first byte of any stream.
#[derive(Debug)]
pub struct RecvClock {
    first: Mutex<Option<Instant>>,
    omit: Duration,
}

impl RecvClock {
    pub fn new(omit: Duration) -> Arc<Self> {
        Arc::new(RecvClock {
            first: Mutex::new(None),
            omit,
        })
    }

    /// Start of the counted window, once any byte arrived.
    fn window_start(&self, now: Instant) -> Instant {
        let mut first = match self.first.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *first.get_or_insert(now) + self.omit
    }

    pub fn started(&self) -> Option<Instant> {
        let first = match self.first.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        };
        first.map(|f| f + self.omit)
    }
}

/// What one receiving stream saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecvSummary {
    /// Bytes inside the counted window.
    pub bytes: u64,
    /// Time of the last byte (or of EOF).
    pub last: Option<Instant>,
    /// The sender closed cleanly (vs. stopped by timeout or error).
    pub eof: bool,
}

/// Reads until EOF, `stop`, or `hard_deadline`.
pub fn receive(
    mut s: TcpStream,
    clock: &RecvClock,
    stop: &Stop,
    hard_deadline: Instant,
) -> RecvSummary {
    let mut out = RecvSummary::default();
    if let Err(e) = s.set_read_timeout(Some(POLL)) {
        tracing::warn!("probe: data stream read timeout: {e}");
        return out;
    }
    let mut buf = vec![0u8; BLOCK];
    let mut window: Option<Instant> = None;
    loop {
        if stop.raised() || Instant::now() >= hard_deadline {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                out.eof = true;
                break;
            }
            Ok(n) => {
                let now = Instant::now();
                let start = *window.get_or_insert_with(|| clock.window_start(now));
                if now >= start {
                    out.bytes += n as u64;
                }
                out.last = Some(now);
            }
            Err(e) if is_retry(&e) => {}
            Err(e) => {
                tracing::debug!("probe: data stream ended: {e}");
                break;
            }
        }
    }
    out
}

/// Sum of the streams over the shared window.
pub fn summarize(clock: &RecvClock, streams: &[RecvSummary]) -> (u64, f64) {
    let bytes = streams.iter().map(|s| s.bytes).sum();
    let last = streams.iter().filter_map(|s| s.last).max();
    let seconds = match (clock.started(), last) {
        (Some(start), Some(last)) if last > start => (last - start).as_secs_f64(),
        _ => 0.0,
    };
    (bytes, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn sender_and_receiver_agree_on_bytes() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Stop::default();
        let clock = RecvClock::new(Duration::ZERO);
        let rx = {
            let clock = clock.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for _ in 0..2 {
                    let (mut s, _) = l.accept().unwrap();
                    let mut pre = [0u8; Preamble::LEN];
                    s.read_exact(&mut pre).unwrap();
                    let p = Preamble::decode(&pre).unwrap();
                    assert_eq!((p.kind, p.cookie), (StreamKind::TcpData, 9));
                    let clock = clock.clone();
                    let stop = stop.clone();
                    out.push(std::thread::spawn(move || {
                        receive(s, &clock, &stop, Instant::now() + Duration::from_secs(10))
                    }));
                }
                out.into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        let sent = send_streams(
            addr,
            9,
            2,
            Duration::from_millis(300),
            Duration::from_secs(2),
            &stop,
        )
        .unwrap();
        let got = rx.join().unwrap();
        assert!(got.iter().all(|r| r.eof));
        let (bytes, seconds) = summarize(&clock, &got);
        assert_eq!(bytes, sent.bytes);
        assert!(sent.bytes > 0);
        assert!(seconds > 0.2 && seconds < 2.0, "{seconds}");
        assert_eq!(sent.retransmits, Some(0));
    }

    #[test]
    fn omit_leaves_out_the_start() {
        let clock = RecvClock::new(Duration::from_secs(3600));
        // A window that starts an hour after the first byte counts nothing yet.
        let now = Instant::now();
        assert!(clock.window_start(now) > now);
        assert_eq!(summarize(&clock, &[RecvSummary::default()]), (0, 0.0));
    }

    #[test]
    fn receiver_stops_on_request() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let stop = Stop::default();
        stop.raise();
        let t0 = Instant::now();
        let r = receive(
            s,
            &RecvClock::new(Duration::ZERO),
            &stop,
            Instant::now() + Duration::from_secs(60),
        );
        assert!(!r.eof);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
