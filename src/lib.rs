//! kecs-cluster: create, delete and inspect local Kubernetes clusters inside
//! Docker — k3s nodes the way k3d makes them (provider `k3d`, the default) or
//! Kubernetes nodes the way kind makes them (provider `kind`) — through the
//! Docker Engine API (bollard) and the Kubernetes API (kube-rs). Rust callers use
//! [`ClusterManager`]; C and Go callers use the C ABI in [`ffi`].
//!
//! A cluster's whole life, with the defaults and the environment (`KECS_*`,
//! `DOCKER_HOST`; see [`ClusterManagerConfig`]):
//!
//! ```no_run
//! use kecs_cluster::{CancellationToken, ClusterManager, ClusterManagerConfig, CreateOptions};
//!
//! #[tokio::main]
//! async fn main() -> kecs_cluster::Result<()> {
//!     let manager = ClusterManager::new(&ClusterManagerConfig::default())?;
//!     // Cancel the token (from anywhere) to stop a create; it then removes what it made.
//!     let cancel = CancellationToken::new();
//!     let options = CreateOptions { agents: 1, ..Default::default() };
//!     let info = manager.create("web", &options, &cancel).await?; // cluster "kecs-web"
//!     println!("{} is {}; kubeconfig at {}", info.name, info.status, info.kubeconfig_path);
//!     let yaml = manager.kubeconfig("web", &cancel).await?; // what kubectl needs
//!     assert!(yaml.contains("kecs-web"));
//!     manager.delete("web", &cancel).await?; // containers, network, kubeconfig files
//!     Ok(())
//! }
//! ```
//!
//! Every error carries an [`ErrorCode`] (the same numbers as the C ABI's status):
//!
//! ```no_run
//! # use kecs_cluster::{CancellationToken, ClusterManager, ClusterManagerConfig, ErrorCode};
//! # async fn run(manager: &ClusterManager) {
//! match manager.info("nope", &CancellationToken::new()).await {
//!     Err(e) if e.code() == ErrorCode::NotFound => println!("no such cluster: {e}"),
//!     Err(e) => eprintln!("failed: {e}"),
//!     Ok(info) => println!("{} nodes", info.nodes.len()),
//! }
//! # }
//! ```

pub mod config;
pub mod docker;
pub mod docker_host;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod guard;
pub mod kubeconfig;
pub mod manager;
pub mod names;
pub mod options;
pub mod provider;
pub mod readiness;
pub mod registry;

pub use config::{ClusterManagerConfig, ProviderKind, ResolvedConfig};
pub use error::{Error, ErrorCode, Result};
pub use manager::ClusterManager;
pub use options::{CreateOptions, PortMapping, VolumeMount};
pub use provider::{ClusterInfo, NodeInfo, PortInfo};
pub use registry::{RegistryCreate, RegistryInfo, RegistryOptions};
pub use tokio_util::sync::CancellationToken;
