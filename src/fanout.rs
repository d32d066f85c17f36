//! Run one async job per host with bounded concurrency; one host's failure never stops others.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

/// What happened on one host.
#[derive(Debug)]
pub struct HostResult<T> {
    pub host: String,
    pub result: anyhow::Result<T>,
    pub elapsed: Duration,
}

/// Run `job` for every item, at most `limit` at once, and return results in input order.
pub async fn for_each<I, T, F, Fut>(
    items: Vec<I>,
    limit: usize,
    name: impl Fn(&I) -> String,
    job: F,
) -> Vec<HostResult<T>>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let limit = limit.max(1);
    let mut indexed: Vec<(usize, HostResult<T>)> = stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| {
            let host = name(&item);
            let fut = job(item);
            async move {
                let start = Instant::now();
                let result = fut.await;
                (
                    i,
                    HostResult {
                        host,
                        result,
                        elapsed: start.elapsed(),
                    },
                )
            }
        })
        .buffer_unordered(limit)
        .collect()
        .await;
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, r)| r).collect()
}

/// Names and reasons of the hosts that failed, for the closing summary.
pub fn failures<T>(results: &[HostResult<T>]) -> Vec<(&str, String)> {
    results
        .iter()
        .filter_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|e| (r.host.as_str(), format!("{e:#}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_and_isolates_failures() {
        let out = for_each(
            vec![3u64, 1, 2],
            2,
            |n| format!("h{n}"),
            |n| async move {
                tokio::time::sleep(Duration::from_millis(n * 5)).await;
                if n == 1 {
                    anyhow::bail!("boom")
                }
                Ok(n * 10)
            },
        )
        .await;
        let names: Vec<_> = out.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(names, ["h3", "h1", "h2"]);
        assert_eq!(failures(&out), vec![("h1", "boom".to_string())]);
        assert_eq!(*out[0].result.as_ref().unwrap(), 30);
    }

    #[tokio::test]
    async fn respects_the_limit() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for_each(
            (0..20).collect(),
            4,
            |i| i.to_string(),
            |_| {
                let (live, peak) = (live.clone(), peak.clone());
                async move {
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    live.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .await;
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }
}
