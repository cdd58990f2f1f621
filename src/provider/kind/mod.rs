//! The kind provider: Kubernetes nodes in Docker as kind makes them (names, labels,
//! the shared `kind` network, kubeadm driven through exec), with Docker Engine API
//! calls only — exec included, no Docker CLI. Any number of control planes
//! (several behind kind's external load balancer) and workers.

mod create;
pub mod spec;

use crate::engine::models::ContainerSummary;
use crate::engine::Engine;
use std::collections::BTreeMap;

use super::lifecycle::{self, names_where, NodeStart};
use super::query::{self, cluster_info, node_summary, reachable_kubeconfig, KubeconfigSource};
use super::{ClusterInfo, Created, Kubeconfigs, Provider, ProviderCtx};
use crate::config::ProviderKind;
use crate::docker::{self, summary_label, summary_name};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::kubeconfig::EntryNames;
use crate::options::CreatePlan;
use crate::readiness;
use crate::registry::{self, RegistryRef};

pub struct KindProvider;

async fn node_containers(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
) -> Result<Vec<ContainerSummary>> {
    docker::containers_with_labels(cx.docker, &[(spec::CLUSTER_LABEL, cluster)])
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))
}

fn control_plane(nodes: &[ContainerSummary], cluster: &str) -> Result<String> {
    let mut cps: Vec<String> = nodes
        .iter()
        .filter(|c| summary_label(c, spec::ROLE_LABEL) == Some("control-plane"))
        .map(summary_name)
        .collect();
    cps.sort();
    cps.into_iter().next().ok_or_else(|| {
        Error::NotFound(format!(
            "could not locate any control plane nodes for cluster {cluster}"
        ))
    })
}

/// The external load balancer's container name, when the cluster has one.
fn load_balancer(nodes: &[ContainerSummary]) -> Option<String> {
    nodes
        .iter()
        .find(|c| role(c) == spec::LB_ROLE)
        .map(summary_name)
}

/// kubeadm's admin.conf from the control-plane, renamed to `kind-<c>`, pointing
/// at the load balancer when there is one.
async fn read_kubeconfigs(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    cp: &str,
    lb: Option<&str>,
) -> Result<Kubeconfigs> {
    let entry = spec::entry_name(cluster);
    let src = KubeconfigSource {
        node: cp,
        api_node: lb.unwrap_or(cp),
        path: spec::ADMIN_CONF,
        names: EntryNames {
            cluster: entry.clone(),
            context: entry.clone(),
            user: entry,
        },
        internal_url: spec::internal_url(cluster, lb.is_some()),
    };
    query::read_kubeconfigs(cx, cluster, src).await
}

/// Removes the cluster's node containers with their anonymous volumes: all of
/// them (delete), or only those one create made (`creation`, its rollback).
/// The shared `kind` network stays, as kind leaves it.
pub(crate) async fn remove_objects(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    creation: Option<&str>,
    guard: &Guard,
) -> Result<bool> {
    let mut labels = vec![(spec::CLUSTER_LABEL, cluster)];
    labels.extend(creation.map(|id| (crate::provider::CREATION_LABEL, id)));
    let nodes = docker::containers_with_labels(cx.docker, &labels)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    let names: Vec<String> = nodes.iter().map(summary_name).collect();
    docker::remove_containers(cx.docker, &names, guard)
        .await
        .map_err(|e| e.context(format!("deleting cluster {cluster}")))?;
    // a rollback that made no node (it lost the claim) has no registry to release
    if creation.is_none() || !names.is_empty() {
        registry::release_from_shared_network(cx.docker, spec::NETWORK, cluster, guard)
            .await
            .map_err(|e| e.context(format!("deleting cluster {cluster}")))?;
    }
    Ok(!names.is_empty())
}

fn role(c: &ContainerSummary) -> &str {
    summary_label(c, spec::ROLE_LABEL).unwrap_or("")
}

fn is_node(c: &ContainerSummary) -> bool {
    matches!(role(c), "worker" | "control-plane")
}

fn info_from(cluster: &str, all: &[ContainerSummary]) -> ClusterInfo {
    let lb = load_balancer(all);
    let summaries = all
        .iter()
        .map(|c| {
            let mut s = node_summary(c, role(c), 6443);
            // behind the load balancer, a control plane's own port is not the API's
            if lb.is_some() && role(c) != spec::LB_ROLE {
                s.api = None;
            }
            s
        })
        .collect();
    let metadata = BTreeMap::from([("network".to_string(), spec::NETWORK.to_string())]);
    let mut info = cluster_info("kind", cluster, summaries, metadata);
    info.node_count = all.iter().filter(|c| is_node(c)).count();
    if let Some(image) = all
        .iter()
        .filter(|c| is_node(c))
        .find_map(|c| c.image.clone())
    {
        info.metadata.insert("image".into(), image);
    }
    info.load_balancer = lb.unwrap_or_default();
    info
}

impl Provider for KindProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Kind
    }

    fn network_name(&self, _cluster: &str) -> String {
        spec::NETWORK.into()
    }

    fn kubeconfig_cluster_entry(&self, cluster: &str) -> String {
        spec::entry_name(cluster)
    }

    fn check_plan(&self, plan: &CreatePlan) -> Result<()> {
        create::check_plan(plan)
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

    /// kind's recipe on a running cluster: the registry joins the kind network
    /// and every node gets its `hosts.toml`; containerd reads those at each pull,
    /// so no node restarts (only containerd, where `certs.d` had to be enabled).
    async fn registry_connect(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        reg: &RegistryRef,
        guard: &Guard,
    ) -> Result<()> {
        let all = node_containers(cx, cluster).await?;
        if all.is_empty() {
            return Err(Error::NotFound(format!("cluster {cluster} does not exist")));
        }
        registry::connect(cx.docker, reg, spec::NETWORK).await?;
        let nodes: Vec<String> = all
            .iter()
            .filter(|c| is_node(c))
            .map(summary_name)
            .collect();
        let regs = std::slice::from_ref(reg);
        create::use_registries(cx, cluster, &nodes, regs, guard).await?;
        let kcs = self.kubeconfig(cx, cluster).await?;
        create::publish_registries(cx, cluster, &kcs, regs, guard).await
    }

    async fn exists(&self, cx: &ProviderCtx<'_, impl Engine>, cluster: &str) -> Result<bool> {
        Ok(!node_containers(cx, cluster).await?.is_empty())
    }

    async fn kubeconfig(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Kubeconfigs> {
        let nodes = node_containers(cx, cluster).await?;
        let cp = control_plane(&nodes, cluster)?;
        read_kubeconfigs(cx, cluster, &cp, load_balancer(&nodes).as_deref()).await
    }

    async fn info(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
    ) -> Result<Option<ClusterInfo>> {
        let nodes = node_containers(cx, cluster).await?;
        Ok((!nodes.is_empty()).then(|| info_from(cluster, &nodes)))
    }

    async fn list(&self, cx: &ProviderCtx<'_, impl Engine>) -> Result<Vec<ClusterInfo>> {
        let all = docker::containers_with_labels(cx.docker, &[(spec::CLUSTER_LABEL, "")]).await?;
        let by_cluster = query::group_by_cluster(all, spec::CLUSTER_LABEL, &cx.config.name_prefix);
        Ok(by_cluster
            .iter()
            .map(|(name, nodes)| info_from(name, nodes))
            .collect())
    }

    async fn stop(
        &self,
        cx: &ProviderCtx<'_, impl Engine>,
        cluster: &str,
        guard: &Guard,
    ) -> Result<bool> {
        let all = node_containers(cx, cluster).await?;
        if all.is_empty() {
            return Ok(false);
        }
        // workers, then control planes, then the load balancer in front of them
        let phases = vec![
            names_where(&all, |c| role(c) == "worker"),
            names_where(&all, |c| role(c) == "control-plane"),
            names_where(&all, |c| !matches!(role(c), "worker" | "control-plane")),
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
        let all = node_containers(cx, cluster).await?;
        if all.is_empty() {
            return Ok(false);
        }
        let stopped = |c: &ContainerSummary| !lifecycle::is_running(c);
        let phase = |r: &str, lines: &'static [&'static str]| -> Vec<NodeStart> {
            names_where(&all, |c| stopped(c) && role(c) == r)
                .into_iter()
                .map(|name| NodeStart { name, lines })
                .collect()
        };
        // the load balancer first (kind does not wait on it), then the control
        // planes (systemd boots them; kubelet brings the static pods back), then
        // the workers
        let phases = vec![
            phase("external-load-balancer", &[]),
            phase("control-plane", &spec::BOOT_LINES),
            phase("worker", &spec::BOOT_LINES),
        ];
        lifecycle::start_phases(cx, cluster, phases, guard).await?;
        let nodes = all.iter().filter(|c| is_node(c)).count();
        let kcs = guard
            .wait("reading the kubeconfig", self.kubeconfig(cx, cluster))
            .await?;
        let reach = reachable_kubeconfig(cx, spec::NETWORK, &kcs).await;
        readiness::wait_nodes_ready(reach, nodes, guard)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))?;
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
        for n in &nodes {
            if n.state.map(|s| s.to_string()).as_deref() != Some("running") {
                return Err(Error::NodeFailed(format!(
                    "cluster {cluster}: node {} is not running",
                    summary_name(n)
                )));
            }
        }
        let kcs = guard
            .wait("reading the kubeconfig", self.kubeconfig(cx, cluster))
            .await?;
        let reach = reachable_kubeconfig(cx, spec::NETWORK, &kcs).await;
        let expected = nodes.iter().filter(|c| is_node(c)).count();
        readiness::wait_nodes_ready(reach, expected, guard)
            .await
            .map(|_| ())
            .map_err(|e| e.context(format!("cluster {cluster}")))
    }
}
