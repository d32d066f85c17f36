//! Blocking data-path workers on plain OS threads (not the async runtime: per-byte async
//! overhead would cost throughput, and a stuck spawn_blocking task would hold up runtime
//! shutdown). Every worker watches a [`Stop`] flag and uses socket timeouts, so it ends soon
//! after it is told to, or after its owner is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

/// How often blocked workers look at their stop flag (their socket read/write timeout).
pub const POLL: Duration = Duration::from_millis(100);

/// A shared "stop now" flag. Dropping the owning [`StopOnDrop`] raises it.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Raises the flag when the async side gives up (timeout, error, cancellation).
#[derive(Debug, Default)]
pub struct StopOnDrop(pub Stop);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

/// Runs `f` on a named OS thread; the result arrives on the returned channel (a closed channel
/// means the thread panicked or could not be started).
pub fn spawn<T, F>(name: &str, f: F) -> oneshot::Receiver<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start thread {name}: {e}");
    }
    rx
}
