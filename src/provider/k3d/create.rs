//! `create` for the k3d provider: network → image volume → node containers (all
//! created concurrently) → server-0 started → agents started once its API
//! server runs, remaining servers one after another once it is ready (etcd
//! joins one member at a time), the load balancer once the nodes it names run
//! → readiness → kubeconfig. Any failure, timeout or cancellation removes what
//! was made.

use crate::engine::models::{
    NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use crate::engine::Engine;
use std::collections::HashMap;

use super::spec::{self, ClusterSpec, SERVER0};
use super::{
    read_kubeconfigs, remove_objects, AGENT_READY, INIT_RESTART_READY, LB_READY, SERVER_READY,
};
use crate::docker;
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;
use crate::options::{CreatePlan, NodeRef, Role};
use crate::provider::query::{finish_create, reachable_kubeconfig};
use crate::provider::{steps, Created, ProviderCtx, CREATION_LABEL};
use crate::readiness;
use crate::registry::{self, RegistryRef};

pub async fn create(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Created> {
    guard.check("checking the node image")?;
    // before anything of the cluster exists: a missing image leaves nothing behind
    docker::ensure_image(cx.docker, &plan.image, guard)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    if plan.load_balancer.unwrap_or(true) {
        docker::ensure_image(cx.docker, &cx.config.lb_image, guard)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}: the load balancer's image")))?;
    }
    let registries = steps::check_registries(cx, cluster, plan, guard).await?;
    let creation = crate::provider::creation_id(plan)?;
    let creation = creation.as_str();
    steps::with_rollback(
        cluster,
        guard,
        build(cx, cluster, plan, &registries, creation, guard),
        |rb| async move { remove_objects(cx, cluster, Some(creation), &rb).await },
    )
    .await
}

struct Network {
    id: String,
    subnet: String,
    external: bool,
}

/// Reuses `k3d-<c>` if it exists (external unless we made it for this cluster),
/// else creates it as k3d does (bridge, masquerade) labelled with the cluster.
async fn ensure_network(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    creation: &str,
    guard: &Guard,
) -> Result<Network> {
    let name = spec::network_name(cluster);
    let step = format!("cluster {cluster}: creating network {name}");
    guard.check(&step)?;
    let existing = match cx.docker.inspect_network(&name).await {
        Ok(n) => Some(n),
        Err(e) if is_docker_not_found(&e) => None,
        Err(e) => return Err(Error::docker(&step, e)),
    };
    let external = match &existing {
        Some(n) => {
            n.labels
                .as_ref()
                .and_then(|l| l.get("k3d.cluster"))
                .map(String::as_str)
                != Some(cluster)
        }
        None => {
            let req = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                options: Some(HashMap::from([(
                    "com.docker.network.bridge.enable_ip_masquerade".to_string(),
                    "true".to_string(),
                )])),
                labels: Some(HashMap::from([
                    ("app".to_string(), "k3d".to_string()),
                    ("k3d.cluster".to_string(), cluster.to_string()),
                    (CREATION_LABEL.to_string(), creation.to_string()),
                ])),
                ..Default::default()
            };
            match cx.docker.create_network(req).await {
                Ok(_) => {
                    guard.report(&format!("created network {name}"));
                    false
                }
                // created concurrently by someone else: reuse it, do not own it
                Err(crate::engine::EngineError::DockerResponseServerError {
                    status_code: 409,
                    ..
                }) => true,
                Err(e) => return Err(Error::docker(&step, e)),
            }
        }
    };
    let info = cx
        .docker
        .inspect_network(&name)
        .await
        .map_err(|e| Error::docker(&step, e))?;
    let subnet = info
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.subnet.clone())
        .unwrap_or_default();
    Ok(Network {
        id: info.id.unwrap_or_default(),
        subnet,
        external,
    })
}

/// The image volume `k3d-<c>-images`, made first: it is also the cluster name's
/// claim. The engine serialises volume creates by name and hands back the
/// existing volume to a second one, so exactly one create finds its own id on
/// it; another (another process creating the same name at the same moment, or
/// a create that crashed without its rollback) is AlreadyExists, having made
/// nothing.
async fn claim_with_image_volume(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    creation: &str,
    guard: &Guard,
) -> Result<()> {
    let name = spec::image_volume(cluster);
    let step = format!("cluster {cluster}: creating volume {name}");
    guard.check(&step)?;
    let req = VolumeCreateRequest {
        name: Some(name.clone()),
        driver: Some("local".into()),
        labels: Some(HashMap::from([
            ("app".to_string(), "k3d".to_string()),
            ("k3d.cluster".to_string(), cluster.to_string()),
            (
                "k3d.version".to_string(),
                spec::K3D_VERSION_LABEL.to_string(),
            ),
            (CREATION_LABEL.to_string(), creation.to_string()),
        ])),
        ..Default::default()
    };
    let volume = cx
        .docker
        .create_volume(req)
        .await
        .map_err(|e| Error::docker(&step, e))?;
    let owner = volume.labels.get(CREATION_LABEL).map(String::as_str);
    if owner != Some(creation) {
        return Err(Error::AlreadyExists(format!(
            "cluster {cluster} is being created by another process (volume {name} belongs to create {}); if no other create is running, `delete` the cluster to remove what an interrupted create left",
            owner.unwrap_or("of another tool")
        )));
    }
    guard.report(&format!("created volume {name}"));
    Ok(())
}

/// k3d-created named volumes (`k3d-*`) that do not exist yet are made with the
/// cluster's labels, so delete removes them; other named volumes are the user's.
async fn create_named_volumes(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    creation: &str,
) -> Result<()> {
    for v in plan
        .volumes
        .iter()
        .filter(|v| !v.source.starts_with('/') && v.source.starts_with("k3d-"))
    {
        if cx.docker.inspect_volume(&v.source).await.is_ok() {
            continue;
        }
        let req = VolumeCreateRequest {
            name: Some(v.source.clone()),
            labels: Some(HashMap::from([
                ("app".to_string(), "k3d".to_string()),
                ("k3d.cluster".to_string(), cluster.to_string()),
                (CREATION_LABEL.to_string(), creation.to_string()),
            ])),
            ..Default::default()
        };
        cx.docker.create_volume(req).await.map_err(|e| {
            Error::docker(
                format!("cluster {cluster}: creating volume {}", v.source),
                e,
            )
        })?;
    }
    Ok(())
}

/// k3d's restart policy, set once the cluster is up.
fn unless_stopped() -> RestartPolicy {
    RestartPolicy {
        name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
        maximum_retry_count: None,
    }
}

async fn wait_node(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    name: &str,
    line: &str,
    guard: &Guard,
) -> Result<()> {
    steps::wait_for_line(cx, cluster, name, &[line], guard).await
}

async fn build(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    registries: &[RegistryRef],
    creation: &str,
    guard: &Guard,
) -> Result<Created> {
    // the claim first: a create that loses it has made nothing
    claim_with_image_volume(cx, cluster, creation, guard).await?;
    let net = ensure_network(cx, cluster, creation, guard).await?;
    create_named_volumes(cx, cluster, plan, creation).await?;
    let token = spec::new_token()?;
    let spec = ClusterSpec {
        cluster,
        creation,
        token: &token,
        network_id: &net.id,
        network_subnet: &net.subnet,
        network_external: net.external,
        plan,
        config: cx.config,
    };

    // every container exists before any starts
    let nodes = spec.nodes();
    let lb = spec.has_lb().then(|| spec::lb_name(cluster));
    let mut bodies: Vec<_> = nodes
        .iter()
        .map(|n| (spec::node_name(cluster, *n), spec.container(*n)))
        .collect();
    if let Some(lb) = &lb {
        bodies.push((lb.clone(), spec.lb_container()));
    }
    // the registries come up while the nodes are created and start: a node
    // needs a registry only when it pulls (join: both sides finish, so a
    // rollback sees whatever they made)
    let network = spec::network_name(cluster);
    let registries_up = steps::attach_registries(cx, cluster, plan, registries, &network, guard);
    let nodes_up = async {
        steps::create_nodes(cx, cluster, bodies, guard).await?;
        start_nodes(
            cx,
            cluster,
            plan,
            &spec,
            &nodes,
            lb.as_deref(),
            registries,
            guard,
        )
        .await
    };
    let (regs, started) = futures_util::future::join(registries_up, nodes_up).await;
    started?;
    regs?;

    let name = |n: NodeRef| spec::node_name(cluster, n);
    let server0 = name(SERVER0);
    let all: Vec<String> = nodes.iter().map(|n| name(*n)).chain(lb.clone()).collect();
    let created = finish_create(
        cx,
        cluster,
        &spec::network_name(cluster),
        nodes.len(),
        plan.wait_ready,
        guard,
        steps::set_restart_policy(cx, cluster, &all, unless_stopped(), guard),
        read_kubeconfigs(cx, cluster, &server0, lb.as_deref().unwrap_or(&server0)),
    )
    .await?;
    if !registries.is_empty() {
        publish_registries(cx, cluster, &created, registries, guard).await?;
    }
    Ok(created)
}

/// Starts the nodes and the load balancer in k3d's dependency order, pipelined
/// (see the module comment); returns once servers, agents and the load
/// balancer are up.
#[allow(clippy::too_many_arguments)]
async fn start_nodes(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    spec: &ClusterSpec<'_>,
    nodes: &[NodeRef],
    lb: Option<&str>,
    registries: &[RegistryRef],
    guard: &Guard,
) -> Result<()> {
    let name = |n: NodeRef| spec::node_name(cluster, n);
    let server0 = name(SERVER0);
    let agents: Vec<String> = nodes
        .iter()
        .filter(|n| n.role == Role::Agent)
        .map(|n| name(*n))
        .collect();
    let joining_servers: Vec<String> = nodes
        .iter()
        .filter(|n| n.role == Role::Server && **n != SERVER0)
        .map(|n| name(*n))
        .collect();

    // The load balancer's configuration is written while the nodes start
    // (before its own first start).
    let lb_config = async {
        match &lb {
            Some(lb) => {
                guard.check(&format!("cluster {cluster}: configuring {lb}"))?;
                let yaml = spec::lb_values_yaml(&spec.lb_targets());
                docker::write_file(cx.docker, lb, spec::LB_CONFIG_PATH, yaml.as_bytes(), 0o744)
                    .await
                    .map_err(|e| e.context(format!("cluster {cluster}")))
            }
            None => Ok(()),
        }
    };
    // k3s reads registries.yaml at its first start: write it before
    let mirrors = async {
        if registries.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = nodes.iter().map(|n| spec::node_name(cluster, *n)).collect();
        registry::write_k3s_config(cx.docker, &names, registries)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))
    };
    let server0_started = async {
        mirrors.await?;
        steps::start_node(cx, cluster, &server0, plan.api_port, guard).await
    };
    let (configured, started) = futures_util::future::join(lb_config, server0_started).await;
    configured?;
    started?;

    // Pipelined from here. An agent started before server-0's supervisor
    // listens misses its first join and waits out k3s's retry interval, so the
    // agents start as soon as server-0 logs that it runs its API server (its
    // join endpoint answers from then on). The load balancer starts once every
    // node its configuration names runs (nginx resolves its upstreams at start):
    // the servers, and the agents only when ports on it go to them.
    let lb_names_agents = spec
        .lb_targets()
        .values()
        .any(|targets| targets.iter().any(|t| agents.contains(t)));
    let (agents_started_tx, agents_started_rx) = tokio::sync::oneshot::channel::<bool>();
    let (servers_started_tx, servers_started_rx) = tokio::sync::oneshot::channel::<bool>();
    let agents_up = async {
        let started = async {
            if agents.is_empty() {
                return Ok(());
            }
            let step = format!("cluster {cluster}: waiting for {server0} to run its API server");
            guard
                .wait(
                    &step,
                    // a server without an API server of its own (`--disable-apiserver`)
                    // never logs the first line: its ready line lets the agents go too
                    docker::wait_for_log_line(
                        cx.docker,
                        &server0,
                        &[INIT_RESTART_READY, SERVER_READY],
                        0,
                    ),
                )
                .await?;
            guard.report(&format!(
                "node {server0} runs its API server: starting agents"
            ));
            // join_all: every start finishes, so rollback knows what runs
            let starts = futures_util::future::join_all(
                agents
                    .iter()
                    .map(|a| steps::start_node(cx, cluster, a, plan.api_port, guard)),
            )
            .await;
            starts.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
        }
        .await;
        let _ = agents_started_tx.send(started.is_ok());
        started?;
        if plan.wait_ready {
            let waits = futures_util::future::join_all(
                agents
                    .iter()
                    .map(|a| wait_node(cx, cluster, a, AGENT_READY, guard)),
            )
            .await;
            waits.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Ok::<_, Error>(())
    };
    // etcd takes one member at a time: the other servers start one after another
    let servers_up = async {
        let joined = async {
            wait_node(cx, cluster, &server0, SERVER_READY, guard).await?;
            for s in &joining_servers {
                steps::start_node(cx, cluster, s, plan.api_port, guard).await?;
                wait_node(cx, cluster, s, SERVER_READY, guard).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        let _ = servers_started_tx.send(joined.is_ok());
        joined
    };
    let lb_up = async {
        let Some(lb) = &lb else {
            return Ok(());
        };
        // a branch that failed reports its own error; the load balancer then
        // stays unstarted
        if !joining_servers.is_empty() && !servers_started_rx.await.unwrap_or(false) {
            return Ok(());
        }
        if lb_names_agents && !agents_started_rx.await.unwrap_or(false) {
            return Ok(());
        }
        steps::start_node(cx, cluster, lb, plan.api_port, guard).await?;
        wait_node(cx, cluster, lb, LB_READY, guard).await
    };
    let (agents_res, servers_res, lb_res) =
        futures_util::future::join3(agents_up, servers_up, lb_up).await;
    servers_res?;
    agents_res?;
    lb_res
}

/// The KEP-1755 ConfigMap and CoreDNS's NodeHosts, once the API answers.
async fn publish_registries(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    created: &Created,
    registries: &[RegistryRef],
    guard: &Guard,
) -> Result<()> {
    let net = spec::network_name(cluster);
    let reach = reachable_kubeconfig(cx, &net, &created.kubeconfigs).await;
    let step = format!("cluster {cluster}: publishing the registries in the cluster");
    guard
        .wait(&step, async {
            let client = readiness::client(reach, std::time::Duration::from_secs(10)).await?;
            registry::publish_in_cluster(cx.docker, &client, &net, registries, true).await
        })
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))
}
