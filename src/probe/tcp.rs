//! TCP bulk-transfer data path the way iperf3 does it, so CPU-bound paths give the same
//! figures: 128 KiB blocks, readiness from poll(2); the sender writes nonblocking, [`BURST`]
//! rounds of one block per ready stream; the receiver reads one whole block (blocking, with a
//! timeout) per ready stream per round. Kernel buffer autotuning left alone. Each side runs either one data thread for all streams (iperf3 up to
//! 3.15, the default) or one per stream (iperf3 3.16+); see [`super::DataThreads`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::sockopt;
use super::threads::{POLL, Stop};
use super::wire::{Preamble, StreamKind};

/// iperf3's default TCP block size.
pub const BLOCK: usize = 128 * 1024;
/// Rounds of writes over the ready streams per poll, like iperf3's "multisend".
const BURST: usize = 10;

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
/// starts once all are connected) from `threads` data threads, and closes them.
pub fn send_streams(
    addr: SocketAddr,
    cookie: u64,
    streams: u32,
    threads: u32,
    duration: Duration,
    connect_timeout: Duration,
    stop: &Stop,
) -> Result<SendSummary, DataError> {
    let threads = threads.clamp(1, streams.max(1));
    let mut groups: Vec<Vec<(u32, TcpStream)>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..streams {
        let s = connect(addr, StreamKind::TcpData, cookie, connect_timeout)?;
        groups[(i % threads) as usize].push((i, s));
    }
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = groups
        .into_iter()
        .enumerate()
        .map(|(t, group)| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("probe-tx{t}"))
                .spawn(move || send_group(group, deadline, &stop))
                .map_err(|source| DataError::Stream {
                    stream: t as u32,
                    source,
                })
        })
        .collect();
    let mut total = SendSummary {
        bytes: 0,
        retransmits: Some(0),
    };
    let mut first_err = None;
    for (t, h) in handles.into_iter().enumerate() {
        let r = h.and_then(|h| h.join().map_err(|_| DataError::Thread(t as u32))?);
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

/// One data thread's loop: poll its sockets for room, write blocks into the ready ones.
fn send_group(
    mut socks: Vec<(u32, TcpStream)>,
    deadline: Instant,
    stop: &Stop,
) -> Result<SendSummary, DataError> {
    let fail = |stream: u32| move |source| DataError::Stream { stream, source };
    for (i, s) in &socks {
        s.set_nonblocking(true).map_err(fail(*i))?;
    }
    let first = socks.first().map_or(0, |(i, _)| *i);
    let block = vec![0x5a_u8; BLOCK];
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|(_, s)| sockopt::pollfd(s, libc::POLLOUT))
        .collect();
    let mut bytes = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline || stop.raised() {
            break;
        }
        fds.iter_mut().for_each(|f| f.revents = 0);
        sockopt::poll(&mut fds, (deadline - now).min(POLL)).map_err(fail(first))?;
        // Like iperf3: BURST rounds over the ready streams, one block each per round.
        for _ in 0..BURST {
            for (f, (i, s)) in fds.iter().zip(socks.iter_mut()) {
                if f.revents != 0 {
                    bytes += write_block(s, &block).map_err(fail(*i))?;
                }
            }
        }
    }
    let mut retransmits = Some(0);
    for (_, s) in &socks {
        retransmits = retransmits
            .zip(sockopt::tcp_total_retrans(s).ok())
            .map(|(a, b)| a + b);
        // FIN after the queued data: the receiver's EOF marks the end of its measurement.
        let _ = s.shutdown(Shutdown::Write);
    }
    Ok(SendSummary { bytes, retransmits })
}

/// Writes one block, or as much of it as the socket takes without blocking.
fn write_block(s: &mut TcpStream, block: &[u8]) -> io::Result<u64> {
    let mut done = 0;
    while done < block.len() {
        match s.write(&block[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done as u64)
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
    /// Time of the last byte.
    pub last: Option<Instant>,
    /// The sender closed cleanly (vs. stopped by timeout or error).
    pub eof: bool,
}

/// Hands streams to a running receiver thread (and wakes it up to take them).
pub struct Feeder {
    tx: mpsc::Sender<TcpStream>,
    wake: UnixStream,
}

/// The receiver thread's end of a [`Feeder`].
pub struct Intake {
    rx: mpsc::Receiver<TcpStream>,
    wake: UnixStream,
}

/// A connected feeder/intake pair. Dropping the feeder tells the receiver no more streams come.
pub fn feeder() -> io::Result<(Feeder, Intake)> {
    let (tx, rx) = mpsc::channel();
    let (w, r) = UnixStream::pair()?;
    // The async side must never block on a full wake-up socket (one pending byte is enough).
    w.set_nonblocking(true)?;
    r.set_nonblocking(true)?;
    Ok((Feeder { tx, wake: w }, Intake { rx, wake: r }))
}

impl Feeder {
    pub fn feed(&mut self, s: TcpStream) {
        if self.tx.send(s).is_ok() {
            let _ = self.wake.write(&[1]);
        }
    }
}

struct Receiving {
    sock: TcpStream,
    summary: RecvSummary,
    window: Option<Instant>,
    done: bool,
}

/// One data thread's loop on the receiving side: takes streams from `intake` as they arrive,
/// reads every ready one, until all have ended and the feeder is gone, or `stop`, or
/// `hard_deadline`. Returns one summary per stream.
pub fn receive_group(
    intake: Intake,
    clock: &RecvClock,
    stop: &Stop,
    hard_deadline: Instant,
) -> Vec<RecvSummary> {
    let Intake { rx, mut wake } = intake;
    let mut streams: Vec<Receiving> = Vec::new();
    let mut feeder_gone = false;
    let mut wake_open = true;
    let mut buf = vec![0u8; BLOCK];
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut which: Vec<usize> = Vec::new();
    while !stop.raised() && Instant::now() < hard_deadline {
        loop {
            match rx.try_recv() {
                // Blocking reads bounded by a timeout, so a stalled stream can't hold the thread.
                Ok(sock) => match sock.set_read_timeout(Some(POLL)) {
                    Ok(()) => streams.push(Receiving {
                        sock,
                        summary: RecvSummary::default(),
                        window: None,
                        done: false,
                    }),
                    Err(e) => tracing::warn!("probe: data stream: {e}"),
                },
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    feeder_gone = true;
                    break;
                }
            }
        }
        if feeder_gone && streams.iter().all(|s| s.done) {
            break;
        }
        fds.clear();
        which.clear();
        if wake_open {
            fds.push(sockopt::pollfd(&wake, libc::POLLIN));
        }
        for (i, s) in streams.iter().enumerate().filter(|(_, s)| !s.done) {
            fds.push(sockopt::pollfd(&s.sock, libc::POLLIN));
            which.push(i);
        }
        if let Err(e) = sockopt::poll(&mut fds, POLL) {
            tracing::warn!("probe: poll: {e}");
            break;
        }
        let mut fds_iter = fds.iter();
        if wake_open && fds_iter.next().is_some_and(|f| f.revents != 0) {
            let mut b = [0u8; 64];
            loop {
                match wake.read(&mut b) {
                    Ok(0) => {
                        wake_open = false;
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        for (f, &i) in fds_iter.zip(&which) {
            if f.revents != 0 {
                read_ready(&mut streams[i], clock, &mut buf);
            }
        }
    }
    streams.into_iter().map(|s| s.summary).collect()
}

/// Reads one block from a ready stream (like iperf3: blocking reads until the block is full,
/// EOF, or the socket's read timeout).
fn read_ready(s: &mut Receiving, clock: &RecvClock, buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match s.sock.read(&mut buf[filled..]) {
            Ok(0) => {
                s.summary.eof = true;
                s.done = true;
                return;
            }
            Ok(n) => {
                filled += n;
                let now = Instant::now();
                let start = *s.window.get_or_insert_with(|| clock.window_start(now));
                if now >= start {
                    s.summary.bytes += n as u64;
                }
                s.summary.last = Some(now);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("probe: data stream ended: {e}");
                s.done = true;
                return;
            }
        }
    }
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

    /// Sends `streams` streams from `threads` sender threads to `rx_threads` receiver threads.
    fn transfer(
        streams: u32,
        threads: u32,
        rx_threads: usize,
    ) -> (SendSummary, Vec<RecvSummary>, f64) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Stop::default();
        let clock = RecvClock::new(Duration::ZERO);
        let mut feeders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..rx_threads {
            let (f, intake) = feeder().unwrap();
            feeders.push(f);
            let (clock, stop) = (clock.clone(), stop.clone());
            receivers.push(std::thread::spawn(move || {
                receive_group(
                    intake,
                    &clock,
                    &stop,
                    Instant::now() + Duration::from_secs(10),
                )
            }));
        }
        let acceptor = std::thread::spawn(move || {
            for i in 0..streams as usize {
                let (mut s, _) = l.accept().unwrap();
                let mut pre = [0u8; Preamble::LEN];
                s.read_exact(&mut pre).unwrap();
                let p = Preamble::decode(&pre).unwrap();
                assert_eq!((p.kind, p.cookie), (StreamKind::TcpData, 9));
                let n = feeders.len();
                feeders[i % n].feed(s);
            }
            // Dropping the feeders: no more streams.
        });
        let sent = send_streams(
            addr,
            9,
            streams,
            threads,
            Duration::from_millis(300),
            Duration::from_secs(2),
            &stop,
        )
        .unwrap();
        acceptor.join().unwrap();
        let got: Vec<RecvSummary> = receivers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let (bytes, seconds) = summarize(&clock, &got);
        assert_eq!(bytes, sent.bytes);
        (sent, got, seconds)
    }

    #[test]
    fn one_thread_per_side_moves_every_byte() {
        let (sent, got, seconds) = transfer(3, 1, 1);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|r| r.eof && r.bytes > 0), "{got:?}");
        assert!(sent.bytes > 0);
        assert!(seconds > 0.2 && seconds < 2.0, "{seconds}");
        assert!(sent.retransmits.is_some());
    }

    #[test]
    fn thread_per_stream_moves_every_byte() {
        let (_, got, _) = transfer(2, 2, 2);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| r.eof && r.bytes > 0), "{got:?}");
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
        let (mut f, intake) = feeder().unwrap();
        f.feed(s);
        let stop = Stop::default();
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                stop.raise();
            })
        };
        let t0 = Instant::now();
        let r = receive_group(
            intake,
            &RecvClock::new(Duration::ZERO),
            &stop,
            Instant::now() + Duration::from_secs(60),
        );
        stopper.join().unwrap();
        assert_eq!(r.len(), 1);
        assert!(!r[0].eof);
        // Stopped, not run to the 60 s deadline (generous: the test host may be loaded).
        assert!(t0.elapsed() < Duration::from_secs(30));
        drop(f);
    }
}
