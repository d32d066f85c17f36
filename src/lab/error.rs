//! Typed errors of the lab; the command layer turns them into anyhow at the edge.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab needs root (it creates network namespaces, mounts and cgroups): run it as root"
    )]
    NotRoot,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the lab bridge {bridge} belongs to another lab ({owner}); run `director-boot lab down` \
         with that lab's --state-dir first (only one lab can exist on a machine)"
    )]
    OtherLab { bridge: String, owner: String },
    #[error(
        "{what} already exists on this machine but was not created by this lab; remove it first"
    )]
    Foreign { what: String },
    #[error("lab state file {}: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error("{node}: {message}")]
    Node { node: String, message: String },
    #[error("no lab node named {0} (see `director-boot lab status`)")]
    UnknownNode(String),
    #[error("{0}")]
    Invalid(String),
}

impl LabError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io { path, source }
    }

    pub fn node(node: &str, message: impl Into<String>) -> LabError {
        LabError::Node {
            node: node.to_string(),
            message: message.into(),
        }
    }
}
