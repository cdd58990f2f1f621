//! `create` for the k3d provider: network → image volume → node containers (all
//! created concurrently) → server-0 and agents started together → remaining
//! servers one after another (etcd joins one member at a time) → readiness →
//! kubeconfig. Any failure, timeout or cancellation removes what was made.

use bollard::models::{
    ContainerUpdateBody, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectNetworkOptions, StartContainerOptions,
};
use std::collections::HashMap;
use std::time::Duration;

use super::spec::{self, ClusterSpec, SERVER0};
use super::{read_kubeconfigs, remove_objects, AGENT_READY, SERVER_READY};
use crate::docker;
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;
use crate::options::{CreatePlan, NodeRef, Role};
use crate::provider::query::finish_create;
use crate::provider::{Created, ProviderCtx};

/// How long a rollback may take before we give up and report what is left.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn create(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Created> {
    guard.check("checking the node image")?;
    // before anything of the cluster exists: a missing image leaves nothing behind
    docker::ensure_image(cx.docker, &plan.image, guard)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    match build(cx, cluster, plan, guard).await {
        Ok(k) => Ok(k),
        Err(err) => {
            guard.report(&format!("create failed, rolling back: {err}"));
            let rb = Guard::uncancellable(
                format!("rolling back cluster {cluster}"),
                ROLLBACK_TIMEOUT,
                guard.reporter(),
            );
            match remove_objects(cx, cluster, &rb).await {
                Ok(_) => Err(err),
                Err(rb_err) => Err(Error::Internal(format!(
                    "{err}; rolling back also failed, objects may remain: {rb_err}"
                ))),
            }
        }
    }
}

struct Network {
    id: String,
    subnet: String,
    external: bool,
}

/// Reuses `k3d-<c>` if it exists (external unless we made it for this cluster),
/// else creates it as k3d does (bridge, masquerade) labelled with the cluster.
async fn ensure_network(cx: &ProviderCtx<'_>, cluster: &str, guard: &Guard) -> Result<Network> {
    let name = spec::network_name(cluster);
    let step = format!("cluster {cluster}: creating network {name}");
    guard.check(&step)?;
    let existing = match cx
        .docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await
    {
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
                ])),
                ..Default::default()
            };
            match cx.docker.create_network(req).await {
                Ok(_) => {
                    guard.report(&format!("created network {name}"));
                    false
                }
                // created concurrently by someone else: reuse it, do not own it
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => true,
                Err(e) => return Err(Error::docker(&step, e)),
            }
        }
    };
    let info = cx
        .docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
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

async fn create_image_volume(cx: &ProviderCtx<'_>, cluster: &str, guard: &Guard) -> Result<()> {
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
        ])),
        ..Default::default()
    };
    cx.docker
        .create_volume(req)
        .await
        .map_err(|e| Error::docker(&step, e))?;
    guard.report(&format!("created volume {name}"));
    Ok(())
}

/// k3d-created named volumes (`k3d-*`) that do not exist yet are made with the
/// cluster's labels, so delete removes them; other named volumes are the user's.
async fn create_named_volumes(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    plan: &CreatePlan,
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

/// Nodes are created without a restart policy, so a node that dies while the
/// cluster comes up stays dead and its exit code can be reported; the policy
/// k3d uses (`unless-stopped`) is set once the cluster is ready.
async fn create_node(
    cx: &ProviderCtx<'_>,
    spec: &ClusterSpec<'_>,
    node: NodeRef,
    guard: &Guard,
) -> Result<()> {
    let name = spec::node_name(spec.cluster, node);
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    let mut body = spec.container(node);
    if let Some(hc) = body.host_config.as_mut() {
        hc.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        });
    }
    cx.docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| Error::docker(format!("cluster {}: creating node {name}", spec.cluster), e))?;
    guard.report(&format!("created node {name}"));
    Ok(())
}

async fn arm_restart_policy(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    names: &[String],
    guard: &Guard,
) -> Result<()> {
    guard.check(&format!("cluster {cluster}: setting the restart policy"))?;
    let updates = names.iter().map(|name| async move {
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        cx.docker.update_container(name, body).await.map_err(|e| {
            Error::docker(
                format!("cluster {cluster}: setting the restart policy of {name}"),
                e,
            )
        })
    });
    futures_util::future::try_join_all(updates)
        .await
        .map(|_| ())
}

async fn start_node(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    name: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<()> {
    let step = format!("cluster {cluster}: starting node {name}");
    guard.check(&step)?;
    match cx
        .docker
        .start_container(name, None::<StartContainerOptions>)
        .await
    {
        Ok(()) => {
            guard.report(&format!("started node {name}"));
            Ok(())
        }
        Err(bollard::errors::Error::DockerResponseServerError { message, .. })
            if message.contains("port is already allocated")
                || message.contains("address already in use") =>
        {
            let which = if plan.api_port != 0 {
                format!(" (apiPort {})", plan.api_port)
            } else {
                String::new()
            };
            Err(Error::InvalidArgument(format!(
                "{step}: a host port it publishes{which} is already in use: {message}; choose another port or 0 to let Docker pick"
            )))
        }
        Err(e) => Err(Error::docker(&step, e)),
    }
}

async fn wait_node(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    name: &str,
    line: &str,
    guard: &Guard,
) -> Result<()> {
    let step = format!("cluster {cluster}: waiting for node {name} to log {line:?}");
    guard
        .wait(
            &step,
            docker::wait_for_log_line(cx.docker, name, &[line], 0),
        )
        .await?;
    guard.report(&format!("node {name} is up"));
    Ok(())
}

async fn build(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Created> {
    let (net, ()) = futures_util::future::try_join(
        ensure_network(cx, cluster, guard),
        create_image_volume(cx, cluster, guard),
    )
    .await?;
    create_named_volumes(cx, cluster, plan).await?;
    let token = spec::new_token()?;
    let spec = ClusterSpec {
        cluster,
        token: &token,
        network_id: &net.id,
        network_subnet: &net.subnet,
        network_external: net.external,
        plan,
        config: cx.config,
    };

    // Create every container before starting any; all creations finish (no early
    // return mid-flight), so rollback sees every container that exists.
    guard.check(&format!("cluster {cluster}: creating nodes"))?;
    let nodes = spec.nodes();
    let created =
        futures_util::future::join_all(nodes.iter().map(|n| create_node(cx, &spec, *n, guard)))
            .await;
    created.into_iter().collect::<Result<Vec<()>>>()?;

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

    // Agents retry until server-0 answers, so they start together with it.
    let servers = async {
        start_node(cx, cluster, &server0, plan, guard).await?;
        wait_node(cx, cluster, &server0, SERVER_READY, guard).await?;
        for s in &joining_servers {
            start_node(cx, cluster, s, plan, guard).await?;
            wait_node(cx, cluster, s, SERVER_READY, guard).await?;
        }
        Ok::<_, Error>(())
    };
    let agents = async {
        let starts = agents
            .iter()
            .map(|a| start_node(cx, cluster, a, plan, guard));
        futures_util::future::try_join_all(starts).await?;
        if plan.wait_ready {
            let waits = agents
                .iter()
                .map(|a| wait_node(cx, cluster, a, AGENT_READY, guard));
            futures_util::future::try_join_all(waits).await?;
        }
        Ok::<_, Error>(())
    };
    futures_util::future::try_join(servers, agents).await?;

    let all: Vec<String> = nodes.iter().map(|n| name(*n)).collect();
    finish_create(
        cx,
        cluster,
        &spec::network_name(cluster),
        nodes.len(),
        plan.wait_ready,
        guard,
        arm_restart_policy(cx, cluster, &all, guard),
        read_kubeconfigs(cx, cluster, &server0),
    )
    .await
}
