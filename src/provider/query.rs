//! Pieces shared by the providers: cluster info from container summaries, and
//! which kubeconfig this process can reach a cluster with.

use bollard::models::{ContainerSummary, NetworkConnectRequest};
use std::collections::BTreeMap;

use super::{ClusterInfo, Kubeconfigs, NodeInfo, ProviderCtx};
use crate::docker::summary_name;

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

/// The kubeconfig this process can use: in container mode, when we run in a
/// container we can identify, join the cluster network and use node names;
/// otherwise the host URL.
pub async fn reachable_kubeconfig<'k>(
    cx: &ProviderCtx<'_>,
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
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 403 | 409,
            ..
        }) => &kcs.internal,
        Err(_) => &kcs.host,
    }
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
