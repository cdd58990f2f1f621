//! kecs-cluster: create, delete and inspect local Kubernetes clusters inside
//! Docker — k3s nodes the way k3d makes them — through the Docker Engine API
//! (bollard) and the Kubernetes API (kube-rs). Rust callers use
//! [`ClusterManager`]; C and Go callers use the C ABI in [`ffi`].

pub mod config;
pub mod docker;
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
