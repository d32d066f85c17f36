//! The probe server: one control session at a time, any number of sequential sessions, data
//! streams routed to the running test by cookie, receiver-side figures sent back at the end.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::control::{ClientMsg, Control, ControlError, ServerMsg, TestSpec};
use super::threads::{self, Stop, StopOnDrop};
use super::udp::{self, ServerMode};
use super::wire::{self, Preamble, StreamKind};
use super::{PROTOCOL_VERSION, ProbeError, ServerOptions, tcp};

/// A new connection must say what it is within this long.
const PREAMBLE_WAIT: Duration = Duration::from_secs(5);
/// Bound on waiting for the client's next control message between tests.
const BETWEEN_TESTS: Duration = Duration::from_secs(60);
/// Added to a test's own length before the server gives up on it.
const TEST_SLACK: Duration = Duration::from_secs(30);
/// After the client's `done`, receivers get this long to see their streams end.
const DRAIN: Duration = Duration::from_secs(5);
/// Longest test the server agrees to run.
const MAX_TEST: Duration = Duration::from_secs(3600);
const MAX_STREAMS: u32 = 128;

/// A bound server; [`Server::run`] serves until idle-exit, `once`, or an error.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    opts: ServerOptions,
    addr: SocketAddr,
}

struct Shared {
    session: AtomicBool,
    route: Mutex<Option<Route>>,
    udp: Arc<UdpSocket>,
    /// Transactions served in the running `crr` test.
    crr: AtomicU64,
}

/// Where data connections of the running test go.
struct Route {
    cookie: u64,
    kind: StreamKind,
    tx: mpsc::UnboundedSender<std::net::TcpStream>,
}

impl Shared {
    fn set_route(&self, route: Option<Route>) {
        match self.route.lock() {
            Ok(mut g) => *g = route,
            Err(p) => *p.into_inner() = route,
        }
    }
}

/// Binds and serves until done (see [`ServerOptions`]).
pub async fn serve(opts: &ServerOptions) -> Result<(), ProbeError> {
    let server = Server::bind(opts).await?;
    tracing::info!(
        "probe server listening on {} (tcp+udp)",
        server.local_addr()
    );
    server.run().await
}

impl Server {
    /// Binds TCP and UDP on the same port (with port 0: the same ephemeral number on both).
    pub async fn bind(opts: &ServerOptions) -> Result<Self, ProbeError> {
        let want = SocketAddr::new(opts.bind, opts.port);
        let attempts = if opts.port == 0 { 20 } else { 1 };
        let mut last_err = None;
        for _ in 0..attempts {
            let listener = TcpListener::bind(want)
                .await
                .map_err(|source| ProbeError::Bind { addr: want, source })?;
            let addr = listener.local_addr().map_err(|source| ProbeError::Io {
                context: "listening socket address".into(),
                source,
            })?;
            match UdpSocket::bind(addr) {
                Ok(udp_sock) => {
                    if let Err(e) = udp::set_buffers(&udp_sock) {
                        tracing::warn!("probe: UDP socket buffers: {e}");
                    }
                    return Ok(Server {
                        listener,
                        shared: Arc::new(Shared {
                            session: AtomicBool::new(false),
                            route: Mutex::new(None),
                            udp: Arc::new(udp_sock),
                            crr: AtomicU64::new(0),
                        }),
                        opts: opts.clone(),
                        addr,
                    });
                }
                // The ephemeral TCP port's UDP twin is taken: try another number.
                Err(e) if opts.port == 0 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    last_err = Some(e);
                }
                Err(source) => return Err(ProbeError::Bind { addr, source }),
            }
        }
        Err(ProbeError::Bind {
            addr: want,
            source: last_err.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn run(self) -> Result<(), ProbeError> {
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<()>();
        let mut idle_since = Some(Instant::now());
        loop {
            let idle_deadline = self.opts.idle_exit.zip(idle_since).map(|(d, t)| t + d);
            let wake = idle_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = self.shared.clone();
                        let ended = ended_tx.clone();
                        tokio::spawn(handle_connection(stream, peer, shared, ended));
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!("probe: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(()) = ended_rx.recv() => {
                    if self.opts.once {
                        return Ok(());
                    }
                    idle_since = Some(Instant::now());
                }
                _ = tokio::time::sleep_until(wake), if idle_deadline.is_some() => {
                    if self.shared.session.load(Ordering::SeqCst) {
                        idle_since = None;
                    } else {
                        tracing::info!("probe server: idle, exiting");
                        return Ok(());
                    }
                }
            }
        }
    }
}

async fn handle_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    ended: mpsc::UnboundedSender<()>,
) {
    let mut pre = [0u8; Preamble::LEN];
    match tokio::time::timeout(PREAMBLE_WAIT, stream.read_exact(&mut pre)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return tracing::debug!("probe: {peer}: {e}"),
        Err(_) => return tracing::debug!("probe: {peer}: no preamble"),
    }
    let pre = match Preamble::decode(&pre) {
        Ok(p) => p,
        Err(e) => return tracing::info!("probe: {peer}: {e}"),
    };
    match pre.kind {
        StreamKind::Control => {
            let mut ctl = Control::new(stream);
            if shared
                .session
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // Read the hello first so closing doesn't reset the connection under the reply.
                let _ = ctl.recv_within::<ClientMsg>(Duration::from_secs(2)).await;
                let _ = ctl
                    .send(&ServerMsg::Busy {
                        message: "another client is running tests on this server; \
                                  try again when it is done"
                            .into(),
                    })
                    .await;
                return;
            }
            tracing::info!("probe: session from {peer}");
            let said_bye = match session(&mut ctl, &shared).await {
                Ok(bye) => bye,
                Err(e) => {
                    tracing::warn!("probe: session with {peer} ended: {e}");
                    false
                }
            };
            shared.set_route(None);
            shared.session.store(false, Ordering::SeqCst);
            // Answer `bye` only now, so a client that starts its next session right after
            // the answer never finds this one still holding the server.
            if said_bye {
                let _ = ctl.send(&ServerMsg::Bye).await;
            }
            let _ = ended.send(());
        }
        StreamKind::Crr => {
            let ours = {
                let guard = match shared.route.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                guard
                    .as_ref()
                    .is_some_and(|r| r.cookie == pre.cookie && r.kind == StreamKind::Crr)
            };
            if !ours {
                return tracing::debug!("probe: {peer}: crr connection for no running test");
            }
            if super::crr::serve(stream, PREAMBLE_WAIT).await {
                shared.crr.fetch_add(1, Ordering::SeqCst);
            }
        }
        StreamKind::TcpData | StreamKind::Rr => {
            let std_stream = match stream.into_std().and_then(|s| {
                s.set_nonblocking(false)?;
                Ok(s)
            }) {
                Ok(s) => s,
                Err(e) => return tracing::warn!("probe: {peer}: {e}"),
            };
            let guard = match shared.route.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match guard.as_ref() {
                Some(r) if r.cookie == pre.cookie && r.kind == pre.kind => {
                    let _ = r.tx.send(std_stream);
                }
                _ => tracing::info!("probe: {peer}: data stream for no running test, closed"),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Protocol(String),
}

/// Runs one client's tests; `Ok(true)` when the client ended it with `bye`.
async fn session(ctl: &mut Control, shared: &Shared) -> Result<bool, SessionError> {
    match ctl.recv_within::<ClientMsg>(PREAMBLE_WAIT).await? {
        ClientMsg::Hello { version } if version == PROTOCOL_VERSION => {
            ctl.send(&ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
            })
            .await?;
        }
        ClientMsg::Hello { version } => {
            let message = format!(
                "client speaks probe protocol {version}, this server {PROTOCOL_VERSION}: \
                 use the same director-boot version on both ends"
            );
            ctl.send(&ServerMsg::Error {
                message: message.clone(),
            })
            .await?;
            return Err(SessionError::Protocol(message));
        }
        other => {
            return Err(SessionError::Protocol(format!(
                "expected hello, got {other:?}"
            )));
        }
    }
    loop {
        let msg = match ctl.recv_within::<ClientMsg>(BETWEEN_TESTS).await {
            Ok(m) => m,
            Err(ControlError::Closed) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        match msg {
            ClientMsg::Start { test } => {
                if let Some(problem) = refuse(&test) {
                    ctl.send(&ServerMsg::Error { message: problem }).await?;
                    continue;
                }
                run_test(ctl, shared, test).await?;
            }
            ClientMsg::Bye => return Ok(true),
            other => {
                return Err(SessionError::Protocol(format!(
                    "expected start or bye, got {other:?}"
                )));
            }
        }
    }
}

fn refuse(test: &TestSpec) -> Option<String> {
    match *test {
        TestSpec::Tcp {
            streams,
            duration_ms,
            omit_ms,
            ..
        } if streams == 0
            || streams > MAX_STREAMS
            || Duration::from_millis(duration_ms.saturating_add(omit_ms)) > MAX_TEST =>
        {
            Some(format!(
                "refused: 1..={MAX_STREAMS} streams and at most {} s per test",
                MAX_TEST.as_secs()
            ))
        }
        TestSpec::Udp { duration_ms, .. } | TestSpec::Crr { duration_ms }
            if Duration::from_millis(duration_ms) > MAX_TEST =>
        {
            Some(format!(
                "refused: at most {} s per test",
                MAX_TEST.as_secs()
            ))
        }
        TestSpec::Udp { duration_ms, .. } if Duration::from_millis(duration_ms) > MAX_TEST => Some(
            format!("refused: at most {} s per test", MAX_TEST.as_secs()),
        ),
        _ => None,
    }
}

/// Waits for the client's `done` of the running test (the only message allowed now).
async fn expect_done(ctl: &mut Control, deadline: Instant) -> Result<u64, SessionError> {
    match ctl.recv::<ClientMsg>(deadline).await? {
        ClientMsg::Done { sent_datagrams, .. } => Ok(sent_datagrams),
        other => Err(SessionError::Protocol(format!(
            "expected done, got {other:?}"
        ))),
    }
}

/// Registers a route for this test's TCP connections and hands each one that arrives to a
/// worker thread running `work`. Returns the workers' results once the route is closed.
fn intake<T, F>(
    shared: &Shared,
    kind: StreamKind,
    cookie: u64,
    work: F,
) -> tokio::task::JoinHandle<Vec<oneshot::Receiver<T>>>
where
    T: Send + 'static,
    F: Fn(std::net::TcpStream) -> T + Send + Sync + Clone + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    shared.set_route(Some(Route { cookie, kind, tx }));
    tokio::spawn(async move {
        let mut workers = Vec::new();
        while let Some(s) = rx.recv().await {
            let work = work.clone();
            workers.push(threads::spawn("probe-rx", move || work(s)));
        }
        workers
    })
}

/// Collects worker results, stopping stragglers after `DRAIN`.
async fn collect<T: Default>(workers: Vec<oneshot::Receiver<T>>, stop: &Stop) -> Vec<T> {
    let drain_until = Instant::now() + DRAIN;
    let mut out = Vec::with_capacity(workers.len());
    for mut w in workers {
        let r = match tokio::time::timeout_at(drain_until, &mut w).await {
            Ok(r) => r,
            Err(_) => {
                stop.raise();
                w.await
            }
        };
        out.push(r.unwrap_or_default());
    }
    out
}

async fn run_test(ctl: &mut Control, shared: &Shared, test: TestSpec) -> Result<(), SessionError> {
    let cookie = wire::new_cookie();
    // Raised when this function returns, however it returns: no worker outlives its test.
    let guard = StopOnDrop::default();
    let stop = &guard.0;
    let reply = match test {
        TestSpec::Tcp {
            streams,
            duration_ms,
            omit_ms,
            per_stream_threads,
        } => {
            let length = Duration::from_millis(duration_ms.saturating_add(omit_ms));
            let threads = if per_stream_threads { streams } else { 1 };
            let omit = Duration::from_millis(omit_ms);
            tcp_test(ctl, shared, cookie, length, omit, threads, stop).await?
        }
        TestSpec::Udp { duration_ms, .. } => {
            let length = Duration::from_millis(duration_ms);
            udp_test(ctl, shared, cookie, ServerMode::Count, length, stop).await?
        }
        TestSpec::Mtu => {
            // The client's search is bounded well below this (a few dozen 250 ms waits).
            let length = Duration::from_secs(60);
            udp_test(ctl, shared, cookie, ServerMode::AckProbes, length, stop).await?
        }
        TestSpec::Rr { count } => {
            let length = Duration::from_millis(10) * count;
            rr_test(ctl, shared, cookie, length, stop).await?
        }
        TestSpec::Crr { duration_ms } => {
            crr_test(ctl, shared, cookie, Duration::from_millis(duration_ms)).await?
        }
    };
    ctl.send(&reply).await?;
    Ok(())
}

async fn tcp_test(
    ctl: &mut Control,
    shared: &Shared,
    cookie: u64,
    length: Duration,
    omit: Duration,
    threads: u32,
    stop: &Stop,
) -> Result<ServerMsg, SessionError> {
    let hard = std::time::Instant::now() + length + TEST_SLACK;
    let clock = tcp::RecvClock::new(omit);
    let cpu_before = super::sockopt::process_cpu_seconds();
    let mut feeders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..threads.max(1) {
        let (feeder, intake) = tcp::feeder().map_err(|e| SessionError::Protocol(e.to_string()))?;
        feeders.push(feeder);
        let (clock, stop) = (clock.clone(), stop.clone());
        workers.push(threads::spawn("probe-rx", move || {
            tcp::receive_group(intake, &clock, &stop, hard)
        }));
    }
    // Streams go round-robin to the receiving threads as they connect.
    let (tx, mut rx) = mpsc::unbounded_channel();
    shared.set_route(Some(Route {
        cookie,
        kind: StreamKind::TcpData,
        tx,
    }));
    let distributor = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(s) = rx.recv().await {
            let k = feeders.len();
            feeders[n % k].feed(s);
            n += 1;
        }
        // Dropping the feeders tells the receivers that no more streams come.
    });
    ctl.send(&ServerMsg::Ready { cookie }).await?;
    let done = expect_done(ctl, Instant::now() + length + TEST_SLACK).await;
    shared.set_route(None);
    let _ = distributor.await;
    done?;
    let results: Vec<tcp::RecvSummary> =
        collect(workers, stop).await.into_iter().flatten().collect();
    let (bytes, seconds) = tcp::summarize(&clock, &results);
    let cpu_seconds = cpu_before
        .zip(super::sockopt::process_cpu_seconds())
        .map(|(a, b)| (b - a).max(0.0));
    Ok(ServerMsg::TcpDone {
        streams: results.len() as u32,
        bytes,
        seconds,
        cpu_seconds,
    })
}

async fn crr_test(
    ctl: &mut Control,
    shared: &Shared,
    cookie: u64,
    length: Duration,
) -> Result<ServerMsg, SessionError> {
    shared.crr.store(0, Ordering::SeqCst);
    // Connections of this test are answered by `handle_connection` itself; the route only
    // says which cookie they must carry.
    let (tx, _rx) = mpsc::unbounded_channel();
    shared.set_route(Some(Route {
        cookie,
        kind: StreamKind::Crr,
        tx,
    }));
    ctl.send(&ServerMsg::Ready { cookie }).await?;
    let done = expect_done(ctl, Instant::now() + length + TEST_SLACK).await;
    shared.set_route(None);
    done?;
    Ok(ServerMsg::CrrDone {
        transactions: shared.crr.load(Ordering::SeqCst),
    })
}

async fn rr_test(
    ctl: &mut Control,
    shared: &Shared,
    cookie: u64,
    length: Duration,
    stop: &Stop,
) -> Result<ServerMsg, SessionError> {
    let hard = std::time::Instant::now() + length + TEST_SLACK;
    let workers = {
        let stop = stop.clone();
        intake(shared, StreamKind::Rr, cookie, move |s| {
            super::rr::serve(s, &stop, hard)
        })
    };
    ctl.send(&ServerMsg::Ready { cookie }).await?;
    let done = expect_done(ctl, Instant::now() + length + TEST_SLACK).await;
    shared.set_route(None);
    let workers = workers.await.unwrap_or_default();
    done?;
    let results = collect(workers, stop).await;
    Ok(ServerMsg::RrDone {
        transactions: results.iter().sum(),
    })
}

async fn udp_test(
    ctl: &mut Control,
    shared: &Shared,
    cookie: u64,
    mode: ServerMode,
    length: Duration,
    stop: &Stop,
) -> Result<ServerMsg, SessionError> {
    let hard = std::time::Instant::now() + length + TEST_SLACK;
    // Listening before `ready`, so not even the first datagram can be missed.
    let worker = {
        let (sock, stop) = (shared.udp.clone(), stop.clone());
        threads::spawn("probe-udp", move || {
            udp::serve_test(&sock, cookie, mode, &stop, hard)
        })
    };
    ctl.send(&ServerMsg::Ready { cookie }).await?;
    let done = expect_done(ctl, Instant::now() + length + TEST_SLACK).await;
    // Tell the worker to drain what is still in flight and finish.
    stop.raise();
    let outcome = worker.await;
    let sent = done?;
    let outcome = match outcome {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Ok(ServerMsg::Error {
                message: format!("UDP receive failed: {e}"),
            });
        }
        Err(_) => return Err(SessionError::Protocol("UDP worker died".into())),
    };
    let ignored = outcome.ignored + outcome.accounting.invalid();
    if ignored > 0 {
        tracing::debug!("probe: {ignored} datagrams of other tests or corrupt ignored");
    }
    Ok(match mode {
        ServerMode::Count => {
            let c = outcome.accounting.counts(Some(sent));
            ServerMsg::UdpDone {
                received: c.received,
                bytes: c.bytes,
                lost: c.lost,
                loss_fraction: c.loss_fraction,
                out_of_order: c.out_of_order,
                duplicates: c.duplicates,
                jitter_ms: c.jitter_ms,
                seconds: c.seconds,
            }
        }
        ServerMode::AckProbes => ServerMsg::MtuDone {
            probes: outcome.probes,
            largest: outcome.largest,
        },
    })
}
