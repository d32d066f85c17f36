//! `artifacts`: every binary and image archive each host's roles need, put in place before any
//! role runs, on all hosts at once (workers would otherwise wait through the control-plane
//! phases); checked against the mirror's manifest, uploaded only when the host's copy differs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Phase, PhaseFuture, Run, RunState};
use crate::engine::apply::stage_binaries;
use crate::engine::images;
use crate::engine::preflight;
use crate::node::Node;

pub struct Artifacts;

/// The phase whose hosts also get the image archives.
const RUNTIME: &str = "runtime";

impl Phase for Artifacts {
    fn title(&self) -> &str {
        "artifacts"
    }

    fn hosts<'s>(&self, s: &'s RunState) -> Vec<&'s Node> {
        s.planned().collect()
    }

    fn run<'a>(&'a self, run: &'a mut Run) -> PhaseFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Run { runner, s } = run;
            let written_by_host = Mutex::new(BTreeMap::<String, BTreeSet<String>>::new());
            {
                let (st, written_ref) = (&*s, &written_by_host);
                runner
                    .phase(self.title(), self.hosts(st), |n| async move {
                        let mine: Vec<_> = st
                            .host_roles
                            .get(n.name())
                            .map(|v| v.iter().collect())
                            .unwrap_or_default();
                        let runtime = mine.iter().any(|r| r.phase == RUNTIME);
                        // The image archives travel beside the binaries, not after them.
                        let images = async {
                            if runtime {
                                images::stage_archives(n, &st.artifacts).await.map(Some)
                            } else {
                                Ok(None)
                            }
                        };
                        let (binaries, images) =
                            tokio::join!(stage_binaries(&st.artifacts, n, &mine), images);
                        let (mut changes, mut written) = binaries?;
                        if let Some((lines, archives)) = images? {
                            changes.extend(lines);
                            written.extend(archives);
                        }
                        // A binary that cannot start here (glibc, architecture) is named now,
                        // not as a unit that fails to start phases later.
                        let staged: BTreeSet<(String, String)> = mine
                            .iter()
                            .flat_map(|r| {
                                r.binaries.iter().map(|b| {
                                    let sha = st
                                        .artifacts
                                        .get(&b.name, &r.name)
                                        .map(|a| a.sha256.clone())
                                        .unwrap_or_default();
                                    (b.path(), sha)
                                })
                            })
                            .collect();
                        let staged: Vec<_> = staged.into_iter().collect();
                        preflight::binaries_run(n, &staged).await?;
                        if let Ok(mut m) = written_ref.lock() {
                            m.insert(n.name().to_string(), written);
                        }
                        Ok(changes)
                    })
                    .await;
            }
            s.staged = written_by_host.into_inner().unwrap_or_default();
            Ok(())
        })
    }
}
