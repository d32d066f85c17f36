//! Deployed catalog apps through the Kubernetes API (kube + k8s-openapi): deploy a
//! [`crate::catalog::RenderedApp`] with server-side apply (field manager `director-boot`),
//! roles in `dependsOn` order, watch every member to Ready or to a diagnosis, run membership
//! hooks, and list / show / scale / delete instances later from the record kept in the
//! cluster.
//!
//! Entry points: [`client::connect`], [`apply::deploy`], [`scale::scale`],
//! [`manage::list`], [`manage::status`], [`manage::delete`]; [`report`] renders results as text.

pub mod apply;
pub mod client;
pub mod diagnose;
pub mod endpoints;
mod error;
pub mod hooks;
pub mod java_kubeconfig;
pub mod manage;
pub mod objects;
pub mod observe;
pub mod report;
pub mod scale;
pub mod state;
pub mod watch;

#[cfg(test)]
pub(crate) mod test_fixtures;

pub use apply::{DeployOptions, DeployOutcome, deploy};
pub use client::{Connected, KubeTarget, connect};
pub use diagnose::{Grace, MemberProblem};
pub use error::{AppsError, Rejection};
pub use scale::{RenderError, ScaleOutcome, ScaleRequest, scale};
pub use watch::{NotReady, WaitPolicy};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "director-boot";
