//! The k3d provider: k3s nodes in Docker exactly as k3d makes them (names, labels,
//! env, network, image volume), so `k3d cluster list` and
//! `docker ps --filter label=app=k3d` see our clusters. No load balancer and no
//! tools container: nodes are reached directly.

mod create;
mod ports;
pub mod spec;

use crate::engine::models::ContainerSummary;
use crate::engine::Engine;
use std::collections::BTreeMap;

use super::lifecycle::{self, names_where, NodeStart};
use super::query::{self, cluster_info, node_summary, reachable_kubeconfig, KubeconfigSource};
use super::{ClusterInfo, Created, Kubeconfigs, PortInfo, Provider, ProviderCtx};
use crate::config::ProviderKind;
use crate::docker::{self, summary_label, summary_name};
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;
use crate::kubeconfig::EntryNames;
use crate::options::{CreatePlan, ValidPort};
use crate::readiness;
use crate::registry::{self, RegistryRef};

pub struct K3dProvider;

/// Log lines that mean a node is ready (k3d's `ReadyLogMessagesByRoleAndIntent`).
pub const SERVER_READY: &str = "k3s is up and running";
pub const AGENT_READY: &str = "Successfully registered node";
/// The init server of a multi-server cluster on a restart (k3d's cluster-start intent).
pub const INIT_RESTART_READY: &str = "Running kube-apiserver";
/// The load balancer (nginx's master after every start and reload).
pub const LB_READY: &str = "start worker processes";

pub fn ready_line(role: &str) -> &'static str {
    if role == "agent" {
        AGENT_READY
    } else {
        SERVER_READY
    }
}

fn cluster_labels(cluster: &str) -> [(&str, &str); 2] {
    [("app", "k3d"), ("k3d.cluster", cluster)]
}

/// The cluster's server and agent containers (other k3d roles are ignored).
async fn node_containers(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
) -> Result<Vec<ContainerSummary>> {
    let all = cluster_containers(cx, cluster).await?;
    Ok(all.into_iter().filter(is_node).collect())
}

/// The cluster's nodes, load balancer and port proxies (not a registry).
async fn cluster_containers(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
) -> Result<Vec<ContainerSummary>> {
    let all = docker::containers_with_labels(cx.docker, &cluster_labels(cluster))
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    Ok(all.into_iter().filter(|c| role(c) != "registry").collect())
}

/// The cluster's containers, or NotFound when it has no node.
async fn existing_cluster(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
) -> Result<Vec<ContainerSummary>> {
    let all = cluster_containers(cx, cluster).await?;
    if !all.iter().any(is_node) {
        return Err(Error::NotFound(format!("cluster {cluster} does not exist")));
    }
    Ok(all)
}

fn is_node(c: &ContainerSummary) -> bool {
    matches!(role(c), "server" | "agent")
}

/// The container publishing the API: the load balancer, else server-0.
fn api_container(all: &[ContainerSummary], server0: &str) -> String {
    all.iter()
        .find(|c| role(c) == "loadbalancer")
        .map(summary_name)
        .unwrap_or_else(|| server0.to_string())
}

fn entry_names(cluster: &str) -> EntryNames {
    EntryNames {
        cluster: spec::context_name(cluster),
        context: spec::context_name(cluster),
        user: spec::user_name(cluster),
    }
}

/// The kubeconfig k3s wrote in `server`, for both uses, pointing at the host
/// port `api_node` (the load balancer, or server-0 without one) publishes.
async fn read_kubeconfigs(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    server: &str,
    api_node: &str,
) -> Result<Kubeconfigs> {
    let src = KubeconfigSource {
        node: server,
        api_node,
        path: spec::KUBECONFIG_OUTPUT,
        names: entry_names(cluster),
        internal_url: spec::internal_url(cluster),
    };
    query::read_kubeconfigs(cx, cluster, src).await
}

/// The cluster's labels, narrowed to one create's objects when `creation` is
/// given (a rollback).
fn scoped_labels<'a>(cluster: &'a str, creation: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut labels = cluster_labels(cluster).to_vec();
    labels.extend(creation.map(|id| (crate::provider::CREATION_LABEL, id)));
    labels
}

/// Removes the cluster's containers, its network (only when we created it for
/// this cluster and nothing else holds it) and its labelled volumes: all of
/// them (delete), or only those one create made (`creation`, its rollback).
pub(crate) async fn remove_objects(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    creation: Option<&str>,
    guard: &Guard,
) -> Result<bool> {
    // registries are not removed with the nodes: release_network decides
    let containers: Vec<ContainerSummary> =
        docker::containers_with_labels(cx.docker, &scoped_labels(cluster, creation))
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?
            .into_iter()
            .filter(|c| role(c) != "registry")
            .collect();
    let external = containers
        .iter()
        .any(|c| summary_label(c, "k3d.cluster.network.external") == Some("true"));
    let names: Vec<String> = containers.iter().map(summary_name).collect();
    let mut image_volumes: Vec<&str> = containers
        .iter()
        .filter_map(|c| summary_label(c, "k3d.cluster.imageVolume"))
        // only the cluster's own image volume, whatever a label says
        .filter(|v| *v == spec::image_volume(cluster))
        .collect();
    image_volumes.sort_unstable();
    image_volumes.dedup();
    docker::remove_containers(cx.docker, &names, guard)
        .await
        .map_err(|e| e.context(format!("deleting cluster {cluster}")))?;
    remove_volumes_docker_made(cx, cluster, &image_volumes, guard).await?;
    // A rollback releases registries only from a network it made itself: on
    // anyone else's (a reused network, another process's create of this name)
    // the registries are theirs.
    let release = match creation {
        None => true,
        Some(_) => !external && !owned_networks(cx, cluster, creation).await?.is_empty(),
    };
    if release {
        crate::registry::release_network(cx.docker, &spec::network_name(cluster), cluster, guard)
            .await
            .map_err(|e| e.context(format!("deleting cluster {cluster}")))?;
    }
    let mut removed_any = !names.is_empty();
    if !external {
        removed_any |= remove_owned_network(cx, cluster, creation, guard).await?;
    }
    docker::remove_volumes_with_labels(cx.docker, &scoped_labels(cluster, creation), guard)
        .await
        .map_err(|e| e.context(format!("deleting cluster {cluster}")))?;
    Ok(removed_any)
}

/// Removes the image volumes our nodes mounted that carry no labels: Docker
/// made them on the fly for the mount, because the labelled one the create
/// claimed had been deleted under it (a delete from another process racing the
/// create). A labelled one is removed by label; one still in use stays.
async fn remove_volumes_docker_made(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    volumes: &[&str],
    guard: &Guard,
) -> Result<()> {
    for name in volumes {
        let unlabelled = match cx.docker.inspect_volume(name).await {
            Ok(v) => v.labels.is_empty(),
            Err(e) if is_docker_not_found(&e) => false,
            Err(e) => {
                return Err(Error::docker(
                    format!("deleting cluster {cluster}: inspecting volume {name}"),
                    e,
                ))
            }
        };
        if !unlabelled {
            continue;
        }
        match cx.docker.remove_volume(name, false).await {
            Ok(()) => guard.report(&format!(
                "removed volume {name} (made by Docker for a node)"
            )),
            Err(e) if is_docker_not_found(&e) || crate::engine::status_code(&e) == Some(409) => {}
            Err(e) => {
                return Err(Error::docker(
                    format!("deleting cluster {cluster}: removing volume {name}"),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// The IDs of the networks named `k3d-<c>` labelled with the cluster (and with
/// `creation`, when given).
async fn owned_networks(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    creation: Option<&str>,
) -> Result<Vec<String>> {
    let net = spec::network_name(cluster);
    let mut labels = vec![("k3d.cluster", cluster)];
    labels.extend(creation.map(|id| (crate::provider::CREATION_LABEL, id)));
    let opts = crate::engine::query::ListNetworksOptions {
        filters: Some(docker::label_filter(&labels)),
    };
    let listed = cx.docker.list_networks(opts).await.map_err(|e| {
        Error::docker(
            format!("deleting cluster {cluster}: listing its networks"),
            e,
        )
    })?;
    Ok(listed
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(net.as_str()))
        .filter_map(|n| n.id)
        .collect())
}

/// Removes the cluster's own network: every network of that name labelled with
/// this cluster, found by label and removed by ID. Two creates racing on an
/// engine that lets networks share a name can leave two, and then the name
/// alone is ambiguous to the engine (every call by name fails); by ID, delete
/// clears that state too. Ok(true) when one was removed.
async fn remove_owned_network(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    creation: Option<&str>,
    guard: &Guard,
) -> Result<bool> {
    let net = spec::network_name(cluster);
    let mut removed = false;
    for id in owned_networks(cx, cluster, creation).await? {
        // In container mode we joined the network ourselves: leave it first.
        if let Some(me) = cx.self_container {
            let req = crate::engine::models::NetworkDisconnectRequest {
                container: me.to_string(),
                force: Some(true),
            };
            let _ = cx.docker.disconnect_network(&id, req).await;
        }
        match cx.docker.remove_network(&id).await {
            Ok(()) => {
                guard.report(&format!("removed network {net} ({})", short_id(&id)));
                removed = true;
            }
            Err(e) if is_docker_not_found(&e) => {}
            Err(e) => {
                return Err(Error::docker(
                    format!("deleting cluster {cluster}: removing network {net} (is another container still attached?)"),
                    e,
                ))
            }
        }
    }
    Ok(removed)
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Provider for K3dProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::K3d
    }

    fn network_name(&self, cluster: &str) -> String {
        spec::network_name(cluster)
    }

    fn kubeconfig_cluster_entry(&self, cluster: &str) -> String {
        spec::context_name(cluster)
    }

    async fn create(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        plan: &CreatePlan,
        guard: &Guard,
    ) -> Result<Created> {
        create::create(cx, cluster, plan, guard).await
    }

    async fn delete(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        remove_objects(cx, cluster, None, guard).await
    }

    async fn rollback_create(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        creation: &str,
        guard: &Guard,
    ) -> Result<bool> {
        remove_objects(cx, cluster, Some(creation), guard).await
    }

    async fn exists(&self, cx: &ProviderCtx<'_, impl Engine>, cluster: &str) -> Result<bool> {
        Ok(!cluster_containers(cx, cluster).await?.is_empty())
    }

    async fn registry_connect(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        reg: &RegistryRef,
        guard: &Guard,
    ) -> Result<()> {
        let all = existing_cluster(cx, cluster).await?;
        let net = spec::network_name(cluster);
        registry::connect(cx.docker, reg, &net).await?;
        // every registry on the network, the new one included, in one file
        let mut refs = Vec::new();
        for c in registry::all(cx.docker).await? {
            let on_net = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .is_some_and(|n| n.contains_key(&net));
            if on_net || summary_name(&c) == reg.name {
                refs.push(registry::info_of(&c).into());
            }
        }
        let nodes: Vec<String> = all
            .iter()
            .filter(|c| is_node(c))
            .map(summary_name)
            .collect();
        registry::write_k3s_config(cx.docker, &nodes, &refs)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?;
        // k3s reads registries.yaml only when it starts: restart the nodes, as
        // k3d must for a running cluster
        guard.report(&format!(
            "restarting cluster {cluster} to load registry {}",
            reg.name
        ));
        self.stop(cx, cluster, guard).await?;
        self.start(cx, cluster, guard).await?;
        let kcs = self.kubeconfig(cx, cluster).await?;
        let reach = reachable_kubeconfig(cx, &net, &kcs).await;
        let client = readiness::client(reach, std::time::Duration::from_secs(10)).await?;
        registry::publish_in_cluster(cx.docker, &client, &net, &refs, true).await
    }

    async fn kubeconfig(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Kubeconfigs> {
        let all = cluster_containers(cx, cluster).await?;
        let server = server0(&all, cluster)?;
        read_kubeconfigs(cx, cluster, &server, &api_container(&all, &server)).await
    }

    async fn info(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Option<ClusterInfo>> {
        let all = cluster_containers(cx, cluster).await?;
        if !all.iter().any(is_node) {
            return Ok(None);
        }
        Ok(Some(info_from(cluster, &all)))
    }

    async fn list(&self, cx: &ProviderCtx<'_, impl Engine>) -> Result<Vec<ClusterInfo>> {
        let all = docker::containers_with_labels(cx.docker, &[("app", "k3d")]).await?;
        let members = all.into_iter().filter(|c| role(c) != "registry");
        let by_cluster =
            query::group_by_cluster(members.collect(), "k3d.cluster", &cx.config.name_prefix);
        Ok(by_cluster
            .iter()
            .map(|(name, nodes)| info_from(name, nodes))
            .collect())
    }

    async fn port_add(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        port: &ValidPort,
        guard: &Guard,
    ) -> Result<PortInfo> {
        let all = existing_cluster(cx, cluster).await?;
        let info = info_from(cluster, &all);
        ports::add(cx, cluster, &all, port, &info.ports, guard).await
    }

    async fn port_remove(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        host_port: u16,
        protocol: &str,
        guard: &Guard,
    ) -> Result<()> {
        let all = existing_cluster(cx, cluster).await?;
        let info = info_from(cluster, &all);
        ports::remove(cx, cluster, &all, host_port, protocol, &info.ports, guard).await
    }

    async fn stop(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        let all = docker::containers_with_labels(cx.docker, &cluster_labels(cluster))
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?;
        if all.is_empty() {
            return Ok(false);
        }
        // k3d's order (newest first): load balancers, agents, servers, registry
        let phases = vec![
            names_where(&all, |c| {
                !matches!(role(c), "server" | "agent" | "registry")
            }),
            names_where(&all, |c| role(c) == "agent"),
            names_where(&all, |c| role(c) == "server"),
            names_where(&all, |c| role(c) == "registry"),
        ];
        lifecycle::stop_phases(cx, cluster, phases, guard).await?;
        Ok(true)
    }

    async fn start(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        let all = docker::containers_with_labels(cx.docker, &cluster_labels(cluster))
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?;
        if all.is_empty() {
            return Ok(false);
        }
        let stopped = |c: &ContainerSummary| !lifecycle::is_running(c);
        let is_init = |c: &ContainerSummary| summary_label(c, "k3d.server.init") == Some("true");
        let node = |name: String, lines| NodeStart { name, lines };
        // k3d's order: the init server, the other servers one at a time (etcd
        // members rejoin one by one), the agents together, then the helpers
        let init = names_where(&all, |c| stopped(c) && role(c) == "server" && is_init(c));
        let servers = names_where(&all, |c| stopped(c) && role(c) == "server" && !is_init(c));
        let agents = names_where(&all, |c| stopped(c) && role(c) == "agent");
        let mut phases: Vec<Vec<NodeStart>> = vec![init
            .into_iter()
            .map(|n| node(n, &[INIT_RESTART_READY] as &'static [&'static str]))
            .collect()];
        phases.extend(
            servers
                .iter()
                .map(|s| vec![node(s.clone(), &[SERVER_READY] as &'static [&'static str])]),
        );
        phases.push(
            agents
                .iter()
                .map(|a| node(a.clone(), &[AGENT_READY] as &'static [&'static str]))
                .collect(),
        );
        phases.push(
            all.iter()
                .filter(|c| stopped(c) && !matches!(role(c), "server" | "agent"))
                .map(|c| node(summary_name(c), restart_lines(role(c))))
                .collect(),
        );
        lifecycle::start_phases(cx, cluster, phases, guard).await?;
        // Docker rewrites /etc/hosts at every start: put host.k3d.internal back,
        // as k3d does for the servers (but the init server) and agents it started
        let restarted: Vec<String> = servers.into_iter().chain(agents).collect();
        let nodes = all
            .iter()
            .filter(|c| matches!(role(c), "server" | "agent"))
            .count();
        let (hosts, ready) = futures_util::future::join(
            inject_host_gateway(cx, cluster, &restarted, guard),
            self.wait_api_ready(cx, cluster, nodes, guard),
        )
        .await;
        hosts?;
        ready?;
        Ok(true)
    }

    async fn wait_ready(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<()> {
        let nodes = node_containers(cx, cluster).await?;
        if nodes.is_empty() {
            return Err(Error::NotFound(format!("cluster {cluster} does not exist")));
        }
        let waits = nodes.iter().map(|n| async move {
            let name = summary_name(n);
            let role = summary_label(n, "k3d.role").unwrap_or("server");
            let info = docker::inspect(cx.docker, &name).await?;
            let state = info.state.as_ref();
            if !state.and_then(|s| s.running).unwrap_or(false) {
                return Err(Error::NodeFailed(format!(
                    "cluster {cluster}: node {name} is not running"
                )));
            }
            // k3d follows the log from the node's start, truncated to whole seconds
            let since = state
                .and_then(|s| s.started_at.as_deref())
                .and_then(unix_seconds)
                .unwrap_or(0);
            let step = format!("waiting for node {name} to log {:?}", ready_line(role));
            guard
                .wait(
                    &step,
                    docker::wait_for_log_line(cx.docker, &name, &[ready_line(role)], since),
                )
                .await
                .map(|_| ())
        });
        futures_util::future::try_join_all(waits).await?;
        let kcs = self.kubeconfig(cx, cluster).await?;
        let reach = reachable_kubeconfig(cx, &spec::network_name(cluster), &kcs).await;
        readiness::wait_nodes_ready(reach, nodes.len(), guard)
            .await
            .map(|_| ())
            .map_err(|e| e.context(format!("cluster {cluster}")))
    }
}

impl K3dProvider {
    /// Every node Ready through the API, with the kubeconfig the nodes hold.
    async fn wait_api_ready(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        nodes: usize,
        guard: &Guard,
    ) -> Result<()> {
        let kcs = guard
            .wait("reading the kubeconfig", self.kubeconfig(cx, cluster))
            .await?;
        let reach = reachable_kubeconfig(cx, &spec::network_name(cluster), &kcs).await;
        readiness::wait_nodes_ready(reach, nodes, guard)
            .await
            .map(|_| ())
            .map_err(|e| e.context(format!("cluster {cluster}")))
    }
}

fn role(c: &ContainerSummary) -> &str {
    summary_label(c, "k3d.role").unwrap_or("")
}

/// What a helper container logs when it is back after a start.
fn restart_lines(role: &str) -> &'static [&'static str] {
    match role {
        "loadbalancer" | spec::PORT_PROXY_ROLE => &[LB_READY],
        // registries are not waited for, as in k3d
        _ => &[],
    }
}

/// Appends `<gateway> host.k3d.internal` to each node's /etc/hosts unless it is
/// there (k3d's host alias; Docker rewrites the file at every start). Best
/// effort, as in k3d: a node without a shell only loses the alias.
async fn inject_host_gateway(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    nodes: &[String],
    guard: &Guard,
) -> Result<()> {
    if nodes.is_empty() {
        return Ok(());
    }
    let net = spec::network_name(cluster);
    let gateway = match cx.docker.inspect_network(&net).await {
        Ok(n) => n
            .ipam
            .and_then(|i| i.config)
            .and_then(|c| c.into_iter().find_map(|c| c.gateway)),
        Err(_) => None,
    };
    let Some(gateway) = gateway else {
        guard.report(&format!(
            "network {net} has no gateway: host.k3d.internal not added"
        ));
        return Ok(());
    };
    let script = format!(
        "grep -q ' host.k3d.internal$' /etc/hosts || echo '{gateway} host.k3d.internal' >> /etc/hosts"
    );
    let cmd = ["sh", "-c", script.as_str()];
    let execs = nodes
        .iter()
        .map(|n| docker::exec_ok(cx.docker, n, &cmd, None, cx.config.privileged));
    for (node, res) in nodes
        .iter()
        .zip(futures_util::future::join_all(execs).await)
    {
        if let Err(e) = res {
            guard.report(&format!("node {node}: host.k3d.internal not added: {e}"));
        }
    }
    Ok(())
}

fn server0(nodes: &[ContainerSummary], cluster: &str) -> Result<String> {
    let wanted = spec::node_name(cluster, spec::SERVER0);
    nodes
        .iter()
        .map(summary_name)
        .find(|n| *n == wanted)
        .or_else(|| {
            nodes
                .iter()
                .find(|c| summary_label(c, "k3d.role") == Some("server"))
                .map(summary_name)
        })
        .ok_or_else(|| {
            Error::NotFound(format!(
                "cluster {cluster} does not exist (no server node found)"
            ))
        })
}

/// The cluster as its containers show it: nodes, load balancer and port proxies
/// count for its status; only servers and agents for its node count.
fn info_from(cluster: &str, all: &[ContainerSummary]) -> ClusterInfo {
    let summaries = all.iter().map(|c| node_summary(c, role(c), 6443)).collect();
    let mut metadata = BTreeMap::new();
    if let Some(net) = all
        .first()
        .and_then(|c| summary_label(c, "k3d.cluster.network"))
    {
        metadata.insert("network".to_string(), net.to_string());
    }
    let mut info = cluster_info("k3d", cluster, summaries, metadata);
    info.node_count = all.iter().filter(|c| is_node(c)).count();
    // the node image, not the load balancer's
    if let Some(image) = all
        .iter()
        .filter(|c| is_node(c))
        .find_map(|c| c.image.clone())
    {
        info.metadata.insert("image".into(), image);
    }
    info.load_balancer = all
        .iter()
        .find(|c| role(c) == "loadbalancer")
        .map(summary_name)
        .unwrap_or_default();
    let mut ports: Vec<PortInfo> = all
        .iter()
        .flat_map(|c| query::published_ports(c, role(c) == spec::PORT_PROXY_ROLE, true))
        .collect();
    ports.sort();
    info.ports = ports;
    info
}

/// `2026-11-26T08:00:00.123456789Z` → whole Unix seconds.
pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    let (date, time) = rfc3339.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.get(..8)?.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_docker_timestamps() {
        assert_eq!(super::unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::unix_seconds("2026-11-26T04:00:00.5Z"),
            Some(1_795_665_600)
        );
        assert_eq!(super::unix_seconds("garbage"), None);
    }
}
