//! Pieces shared by the providers: cluster info from container summaries, and
//! which kubeconfig this process can reach a cluster with.

use crate::engine::models::{ContainerSummary, NetworkConnectRequest};
use crate::engine::Engine;
use std::collections::BTreeMap;

use super::{ClusterInfo, Created, Kubeconfigs, NodeInfo, PortInfo, ProviderCtx};
use crate::docker;
use crate::docker::summary_name;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::kubeconfig::{self, EntryNames};
use crate::readiness;

/// A node as read from one `docker ps`-style list entry.
#[derive(Debug, Clone)]
pub struct NodeSummary {
    pub name: String,
    pub role: String,
    pub state: String,
    pub api: Option<(String, u16)>,
    pub image: String,
}

pub fn node_summary(c: &ContainerSummary, role: &str, api_container_port: u16) -> NodeSummary {
    let api = c.ports.as_ref().and_then(|ports| {
        ports
            .iter()
            .find(|p| p.private_port == api_container_port && p.public_port.is_some())
            .map(|p| {
                (
                    p.ip.clone().unwrap_or_default(),
                    p.public_port.unwrap_or_default(),
                )
            })
    });
    NodeSummary {
        name: summary_name(c),
        role: role.to_string(),
        state: c
            .state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".into()),
        api,
        image: c.image.clone().unwrap_or_default(),
    }
}

/// Groups node containers by the value of `cluster_label`, keeping clusters whose
/// names start with `prefix` (the manager's namespace).
pub fn group_by_cluster(
    nodes: Vec<ContainerSummary>,
    cluster_label: &str,
    prefix: &str,
) -> BTreeMap<String, Vec<ContainerSummary>> {
    let mut by_cluster: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
    for c in nodes {
        if let Some(cluster) =
            crate::docker::summary_label(&c, cluster_label).filter(|n| n.starts_with(prefix))
        {
            by_cluster.entry(cluster.to_string()).or_default().push(c);
        }
    }
    by_cluster
}

/// "running" when every node runs, "stopped" when none does, else "degraded".
pub fn status_of(nodes: &[NodeSummary]) -> &'static str {
    let running = nodes.iter().filter(|n| n.state == "running").count();
    match running {
        0 => "stopped",
        r if r == nodes.len() => "running",
        _ => "degraded",
    }
}

pub fn cluster_info(
    provider: &str,
    cluster: &str,
    mut nodes: Vec<NodeSummary>,
    mut metadata: BTreeMap<String, String>,
) -> ClusterInfo {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let api = nodes.iter().find_map(|n| n.api.clone());
    if let Some(image) = nodes
        .first()
        .map(|n| n.image.clone())
        .filter(|i| !i.is_empty())
    {
        metadata.insert("image".into(), image);
    }
    metadata.insert("internal_name".into(), cluster.to_string());
    ClusterInfo {
        name: cluster.to_string(),
        status: status_of(&nodes).to_string(),
        running: status_of(&nodes) == "running",
        load_balancer: String::new(),
        ports: Vec::new(),
        provider: provider.to_string(),
        node_count: nodes.len(),
        version: String::new(),
        metadata,
        kubeconfig_path: String::new(),
        api_host: api.as_ref().map(|a| a.0.clone()).unwrap_or_default(),
        api_port: api.map(|a| a.1).unwrap_or_default(),
        nodes: nodes
            .into_iter()
            .map(|n| NodeInfo {
                name: n.name,
                role: n.role,
                state: n.state,
            })
            .collect(),
    }
}

/// The host-port mappings `c` publishes (one entry per mapping, whatever the
/// address families), leaving out the API port of `api_container`.
pub fn published_ports(c: &ContainerSummary, added: bool, skip_api: bool) -> Vec<PortInfo> {
    let name = summary_name(c);
    let mut out: Vec<PortInfo> = Vec::new();
    for p in c.ports.iter().flatten() {
        let Some(host_port) = p.public_port else {
            continue;
        };
        if skip_api && p.private_port == 6443 {
            continue;
        }
        let protocol = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
        let ip = p.ip.clone().unwrap_or_default();
        let info = PortInfo {
            host_ip: if ip == "::" { "0.0.0.0".into() } else { ip },
            host_port,
            container_port: p.private_port,
            protocol,
            container: name.clone(),
            added,
        };
        if !out.iter().any(|o| {
            (o.host_port, &o.protocol, o.container_port)
                == (info.host_port, &info.protocol, info.container_port)
        }) {
            out.push(info);
        }
    }
    out
}

/// The kubeconfig this process can use: in container mode, when we run in a
/// container we can identify, join the cluster network and use node names;
/// otherwise the host URL.
pub async fn reachable_kubeconfig<'k>(
    cx: &ProviderCtx<'_, impl Engine>,
    network: &str,
    kcs: &'k Kubeconfigs,
) -> &'k str {
    if !cx.config.container_mode {
        return &kcs.host;
    }
    let Some(me) = cx.self_container else {
        return &kcs.host;
    };
    let req = NetworkConnectRequest {
        container: me.to_string(),
        endpoint_config: None,
    };
    match cx.docker.connect_network(network, req).await {
        Ok(()) => &kcs.internal,
        // already connected
        Err(crate::engine::EngineError::DockerResponseServerError {
            status_code: 403 | 409,
            ..
        }) => &kcs.internal,
        Err(_) => &kcs.host,
    }
}

/// Where a provider's nodes keep the kubeconfig and how its entries are named.
pub struct KubeconfigSource<'a> {
    /// The node holding the file.
    pub node: &'a str,
    /// The container publishing the API port 6443 (a load balancer, or `node`).
    pub api_node: &'a str,
    pub path: &'a str,
    pub names: EntryNames,
    /// The server URL for containers on the cluster network.
    pub internal_url: String,
}

/// `https://<host>:<port>` for the API as published on the Docker host.
pub fn host_url(cx: &ProviderCtx<'_, impl Engine>, port: u16) -> String {
    let ip = cx.config.api_host_ip;
    // published on every address (as with a remote engine, whose host is the
    // hostAddress): reach it by hostAddress
    let host = if ip.is_unspecified() {
        match cx.config.host_address.as_deref() {
            Some(h) if h.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{h}]"),
            Some(h) => h.to_string(),
            None => "127.0.0.1".into(),
        }
    } else if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    format!("https://{host}:{port}")
}

/// Copies the kubeconfig out of the node (archive API) while reading its
/// published API port, and rewrites it for the host and for the cluster network.
pub async fn read_kubeconfigs(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    src: KubeconfigSource<'_>,
) -> Result<Kubeconfigs> {
    let node = src.node;
    let (info, raw) =
        futures_util::future::try_join(docker::inspect(cx.docker, src.api_node), async {
            docker::read_file(cx.docker, node, src.path)
                .await
                .map_err(|e| {
                    e.context(format!("cluster {cluster}: reading {} of {node}", src.path))
                })
        })
        .await?;
    let port = docker::published_port(&info, "6443/tcp").ok_or_else(|| {
        Error::NotFound(format!(
            "cluster {cluster}: {} has no published API port (is it running?)",
            src.api_node
        ))
    })?;
    let raw = String::from_utf8(raw).map_err(|_| {
        Error::Internal(format!(
            "cluster {cluster}: {} in {node} is not UTF-8",
            src.path
        ))
    })?;
    Ok(Kubeconfigs {
        host: kubeconfig::rewrite(&raw, &src.names, &host_url(cx, port))?,
        internal: kubeconfig::rewrite(&raw, &src.names, &src.internal_url)?,
    })
}

/// The end of every create: the restart policy is set while the kubeconfig is
/// read and (when waiting) every node is confirmed Ready through the API, whose
/// version is asked on the same connection.
#[allow(clippy::too_many_arguments)]
pub async fn finish_create(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    network: &str,
    expected_nodes: usize,
    wait_ready: bool,
    guard: &Guard,
    arm_restart_policy: impl std::future::Future<Output = Result<()>>,
    read_kubeconfigs: impl std::future::Future<Output = Result<Kubeconfigs>>,
) -> Result<Created> {
    let ready = async {
        guard.check(&format!("cluster {cluster}: reading the kubeconfig"))?;
        let kubeconfigs = read_kubeconfigs.await?;
        if !wait_ready {
            return Ok(Created {
                kubeconfigs,
                version: String::new(),
            });
        }
        let reach = reachable_kubeconfig(cx, network, &kubeconfigs).await;
        let client = readiness::wait_nodes_ready(reach, expected_nodes, guard)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?;
        let version = readiness::version_of(&client).await;
        guard.report(&format!("all {expected_nodes} node(s) Ready"));
        Ok(Created {
            kubeconfigs,
            version,
        })
    };
    // join, not try_join: the restart-policy updates always finish (never
    // abandoned mid-flight), whatever happens to readiness
    let (armed, created) = futures_util::future::join(arm_restart_policy, ready).await;
    armed?;
    created
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, state: &str) -> NodeSummary {
        NodeSummary {
            name: name.into(),
            role: "server".into(),
            state: state.into(),
            api: None,
            image: "img".into(),
        }
    }

    #[test]
    fn status_from_states() {
        assert_eq!(
            status_of(&[node("a", "running"), node("b", "running")]),
            "running"
        );
        assert_eq!(
            status_of(&[node("a", "exited"), node("b", "created")]),
            "stopped"
        );
        assert_eq!(
            status_of(&[node("a", "running"), node("b", "exited")]),
            "degraded"
        );
        let info = cluster_info(
            "k3d",
            "kecs-a",
            vec![node("b", "running"), node("a", "running")],
            BTreeMap::new(),
        );
        assert_eq!(info.nodes[0].name, "a");
        assert_eq!(info.metadata["internal_name"], "kecs-a");
        assert_eq!(info.node_count, 2);
    }
}
