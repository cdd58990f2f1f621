//! Providers turn the manager's requests into Docker objects of one flavour:
//! k3d-style k3s nodes (`k3d`) or kind-style Kubernetes nodes (`kind`). Each
//! owns its naming, labels, start sequence and readiness lines; the manager owns
//! names, kubeconfig files and locking.

pub mod k3d;
pub mod kind;
pub mod lifecycle;
pub mod query;
pub mod steps;

use crate::engine::models::PortBinding;
use crate::engine::DockerEngine;
use crate::engine::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use crate::config::{ProviderKind, ResolvedConfig};
use crate::error::Result;
use crate::guard::Guard;
use crate::options::{CreatePlan, NodeRef, ValidPort};

/// A port map: "6443/tcp" → bindings on the host.
pub(crate) type PortMap = HashMap<String, Option<Vec<PortBinding>>>;

/// All interfaces, as 0.0.0.0: an empty host IP makes Docker 20.10 start an
/// IPv6 proxy too, which on hosts with dual-stack sockets takes the IPv4 port
/// first and fails the start ("bind: address already in use").
pub(crate) const ALL_INTERFACES: &str = "0.0.0.0";

pub(crate) fn binding(host_ip: &str, host_port: u16) -> PortBinding {
    let host_ip = if host_ip.is_empty() {
        ALL_INTERFACES
    } else {
        host_ip
    };
    // an empty host port lets Docker pick a free one
    let port = if host_port == 0 {
        String::new()
    } else {
        host_port.to_string()
    };
    PortBinding {
        host_ip: Some(host_ip.to_string()),
        host_port: Some(port),
    }
}

/// The user's port mappings `node` publishes (none of those that go to the
/// load balancer when the cluster has one: `has_lb`), plus the API port when
/// `api` is given (host IP, host port; 0 = Docker picks).
pub(crate) fn port_bindings(
    plan: &CreatePlan,
    node: NodeRef,
    api: Option<(&str, u16)>,
    has_lb: bool,
) -> PortMap {
    let mine = |p: &&ValidPort| !p.on_lb(has_lb) && p.node == node;
    mappings(plan.ports.iter().filter(mine), api)
}

/// The user's port mappings the load balancer publishes, plus the API port.
pub(crate) fn lb_port_bindings(plan: &CreatePlan, api: (&str, u16)) -> PortMap {
    mappings(plan.ports.iter().filter(|p| p.on_lb(true)), Some(api))
}

fn mappings<'a>(ports: impl Iterator<Item = &'a ValidPort>, api: Option<(&str, u16)>) -> PortMap {
    let mut map = PortMap::new();
    for p in ports {
        map.entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding(p.host_ip.as_deref().unwrap_or(""), p.host_port));
    }
    if let Some((ip, port)) = api {
        map.insert("6443/tcp".into(), Some(vec![binding(ip, port)]));
    }
    map
}

/// `first` followed by the user's volumes as Docker binds (`src:dst[:ro]`).
pub(crate) fn binds(first: String, plan: &CreatePlan) -> Vec<String> {
    let mut binds = vec![first];
    for v in &plan.volumes {
        let ro = if v.read_only { ":ro" } else { "" };
        binds.push(format!("{}:{}{ro}", v.source, v.container_path));
    }
    binds
}

/// Label on every object one create makes, with that create's id: its rollback
/// removes only objects carrying its own id, so two processes creating the
/// same name never remove each other's objects.
pub const CREATION_LABEL: &str = "kecs.creation";

/// The id of this create attempt: the plan's (the manager makes one per
/// attempt, so it can roll back by it too), else a new one.
pub(crate) fn creation_id(plan: &CreatePlan) -> Result<String> {
    if plan.creation_id.is_empty() {
        new_creation_id()
    } else {
        Ok(plan.creation_id.clone())
    }
}

/// A new create's id: 16 random hex digits.
pub(crate) fn new_creation_id() -> Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| crate::Error::Internal(format!("OS random source: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// What a provider needs from the manager for one call.
pub struct ProviderCtx<'a, E: Engine = DockerEngine> {
    pub docker: &'a E,
    pub config: &'a ResolvedConfig,
    /// The container this process runs in, if it runs in one (container mode).
    pub self_container: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub name: String,
    /// "server" or "agent" (k3d); "control-plane" or "worker" (kind).
    pub role: String,
    /// Docker's container state: running, exited, restarting, created…
    pub state: String,
}

/// One cluster as seen from Docker (and, for `info`, from its API server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub name: String,
    /// "running" (every node running), "stopped" (none), or "degraded".
    pub status: String,
    /// True when every container of the cluster runs.
    #[serde(default)]
    pub running: bool,
    pub provider: String,
    pub node_count: usize,
    /// The API server's gitVersion when it answered, else empty.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub kubeconfig_path: String,
    #[serde(default)]
    pub api_host: String,
    #[serde(default)]
    pub api_port: u16,
    #[serde(default)]
    pub nodes: Vec<NodeInfo>,
    /// The server load balancer's container (empty without one).
    #[serde(default)]
    pub load_balancer: String,
    /// Host-port mappings, the API port excepted.
    #[serde(default)]
    pub ports: Vec<PortInfo>,
}

/// One published host-port mapping of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortInfo {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    /// The container publishing it: a node, the load balancer, or the proxy of
    /// a mapping added to the running cluster.
    pub container: String,
    /// Added to the running cluster (`port_add`), so `port_remove` can take it away.
    #[serde(default)]
    pub added: bool,
}

/// A cluster's kubeconfig for the two places it is used from.
#[derive(Debug, Clone)]
pub struct Kubeconfigs {
    /// Server `https://<apiHostIp>:<published port>`: for the Docker host.
    pub host: String,
    /// Server `https://<server node>:6443`: for containers on the cluster network.
    pub internal: String,
}

/// What `create` hands back: the kubeconfigs, and the API server's version when
/// the cluster was waited for (empty otherwise).
#[derive(Debug, Clone)]
pub struct Created {
    pub kubeconfigs: Kubeconfigs,
    pub version: String,
}

/// The operations every provider implements. Implementations roll back what
/// `create` made when it fails, times out or is cancelled.
#[allow(async_fn_in_trait)] // used through static dispatch (`AnyProvider`) only
pub trait Provider {
    fn kind(&self) -> ProviderKind;
    /// The Docker network the cluster's nodes live on.
    fn network_name(&self, cluster: &str) -> String;
    /// The name of the cluster entry in its kubeconfig (`k3d-<c>`, `kind-<c>`).
    fn kubeconfig_cluster_entry(&self, cluster: &str) -> String;
    /// Refuses options this provider cannot honour; called before any Docker call.
    fn check_plan(&self, _plan: &CreatePlan) -> Result<()> {
        Ok(())
    }
    /// Creates and starts the nodes and waits until they are ready (the node log
    /// lines, then — when `plan.wait_ready` — every node Ready via the API).
    async fn create(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        plan: &CreatePlan,
        guard: &Guard,
    ) -> Result<Created>;
    /// Removes everything of the cluster; Ok(false) when there was nothing.
    async fn delete(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool>;
    /// Removes only what the create with id `creation` made (its rollback,
    /// also when the create itself could not run it: a panic, a dropped task).
    async fn rollback_create(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        creation: &str,
        guard: &Guard,
    ) -> Result<bool>;
    async fn exists(&self, cx: &ProviderCtx<'_, impl Engine>, cluster: &str) -> Result<bool>;
    async fn kubeconfig(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Kubeconfigs>;
    /// None when the cluster does not exist.
    async fn info(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Option<ClusterInfo>>;
    async fn list(&self, cx: &ProviderCtx<'_, impl Engine>) -> Result<Vec<ClusterInfo>>;
    /// Waits until an existing cluster's nodes are ready.
    async fn wait_ready(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<()>;
    /// Stops every container of the cluster, in the provider's order; Ok(false)
    /// when the cluster does not exist.
    async fn stop(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool>;
    /// Starts the stopped containers of the cluster in the provider's order,
    /// waits for their restart log lines, then for every node Ready. Ok(false)
    /// when the cluster does not exist.
    async fn start(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool>;
    /// Adds a host-port mapping to the running cluster's load balancer without
    /// interrupting anything already published.
    async fn port_add(
        &self,
        _cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        _port: &ValidPort,
        _guard: &Guard,
    ) -> Result<PortInfo> {
        Err(no_port_edits(self.kind(), cluster))
    }
    /// Attaches an existing registry to the running cluster and makes its
    /// nodes use it (they restart to read the new configuration).
    async fn registry_connect(
        &self,
        _cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        _reg: &crate::registry::RegistryRef,
        _guard: &Guard,
    ) -> Result<()> {
        Err(no_registry_connect(self.kind(), cluster))
    }
    /// Removes a mapping `port_add` made.
    async fn port_remove(
        &self,
        _cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        _host_port: u16,
        _protocol: &str,
        _guard: &Guard,
    ) -> Result<()> {
        Err(no_port_edits(self.kind(), cluster))
    }
}

fn no_registry_connect(kind: ProviderKind, cluster: &str) -> crate::Error {
    crate::Error::InvalidArgument(format!(
        "cluster {cluster}: connecting a registry to a running {} cluster is not supported; use the k3d provider",
        kind.as_str()
    ))
}

fn no_port_edits(kind: ProviderKind, cluster: &str) -> crate::Error {
    crate::Error::InvalidArgument(format!(
        "cluster {cluster}: {} clusters have no load balancer to add port mappings to while they run; use the k3d provider, or map ports at create",
        kind.as_str()
    ))
}

/// Static dispatch over the providers (async trait methods are not object safe).
pub enum AnyProvider {
    K3d(k3d::K3dProvider),
    Kind(kind::KindProvider),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyProvider::K3d($p) => $e,
            AnyProvider::Kind($p) => $e,
        }
    };
}

impl AnyProvider {
    pub fn for_kind(kind: ProviderKind) -> Result<AnyProvider> {
        match kind {
            ProviderKind::K3d => Ok(AnyProvider::K3d(k3d::K3dProvider)),
            ProviderKind::Kind => Ok(AnyProvider::Kind(kind::KindProvider)),
        }
    }
}

impl Provider for AnyProvider {
    fn kind(&self) -> ProviderKind {
        dispatch!(self, p => p.kind())
    }
    fn network_name(&self, cluster: &str) -> String {
        dispatch!(self, p => p.network_name(cluster))
    }
    fn kubeconfig_cluster_entry(&self, cluster: &str) -> String {
        dispatch!(self, p => p.kubeconfig_cluster_entry(cluster))
    }
    fn check_plan(&self, plan: &CreatePlan) -> Result<()> {
        dispatch!(self, p => p.check_plan(plan))
    }
    async fn create(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        plan: &CreatePlan,
        guard: &Guard,
    ) -> Result<Created> {
        dispatch!(self, p => p.create(cx, cluster, plan, guard).await)
    }
    async fn delete(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        dispatch!(self, p => p.delete(cx, cluster, guard).await)
    }
    async fn rollback_create(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        creation: &str,
        guard: &Guard,
    ) -> Result<bool> {
        dispatch!(self, p => p.rollback_create(cx, cluster, creation, guard).await)
    }
    async fn exists(&self, cx: &ProviderCtx<'_, impl Engine>, cluster: &str) -> Result<bool> {
        dispatch!(self, p => p.exists(cx, cluster).await)
    }
    async fn kubeconfig(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Kubeconfigs> {
        dispatch!(self, p => p.kubeconfig(cx, cluster).await)
    }
    async fn info(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Option<ClusterInfo>> {
        dispatch!(self, p => p.info(cx, cluster).await)
    }
    async fn list(&self, cx: &ProviderCtx<'_, impl Engine>) -> Result<Vec<ClusterInfo>> {
        dispatch!(self, p => p.list(cx).await)
    }
    async fn wait_ready(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<()> {
        dispatch!(self, p => p.wait_ready(cx, cluster, guard).await)
    }
    async fn stop(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        dispatch!(self, p => p.stop(cx, cluster, guard).await)
    }
    async fn start(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        dispatch!(self, p => p.start(cx, cluster, guard).await)
    }
    async fn port_add(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        port: &ValidPort,
        guard: &Guard,
    ) -> Result<PortInfo> {
        dispatch!(self, p => p.port_add(cx, cluster, port, guard).await)
    }
    async fn port_remove(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        host_port: u16,
        protocol: &str,
        guard: &Guard,
    ) -> Result<()> {
        dispatch!(self, p => p.port_remove(cx, cluster, host_port, protocol, guard).await)
    }
    async fn registry_connect(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        reg: &crate::registry::RegistryRef,
        guard: &Guard,
    ) -> Result<()> {
        dispatch!(self, p => p.registry_connect(cx, cluster, reg, guard).await)
    }
}
