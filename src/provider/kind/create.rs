//! `create` for the kind provider (kind contract §1–§2 over the Engine API):
//! image → shared `kind` network → node containers (concurrently) → start → boot
//! line → kubeadm.conf → `kubeadm init` → (single node) taint/label → CNI →
//! storage class → `kubeadm join` on the workers (concurrently) → restart policy →
//! kubeconfig → every node Ready. Failures remove the node containers; the shared
//! network stays.

use bollard::models::{
    Ipam, IpamConfig, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::InspectNetworkOptions;
use std::collections::HashMap;

use super::spec::{self, ClusterSpec};
use super::{read_kubeconfigs, remove_objects};
use crate::docker::{self, exec_ok};
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;
use crate::options::{CreatePlan, NodeRef, Role};
use crate::provider::query::finish_create;
use crate::provider::{steps, Created, ProviderCtx};

const KUBECTL: &str = "--kubeconfig=/etc/kubernetes/admin.conf";

/// What kind cannot do (yet) with these options, checked before any Docker call.
pub fn check_plan(plan: &CreatePlan) -> Result<()> {
    if plan.servers > 1 {
        return Err(Error::InvalidArgument(format!(
            "{} control-plane nodes need kind's external load balancer, which this library does not create yet: use servers = 1",
            plan.servers
        )));
    }
    if plan.load_balancer == Some(true) || plan.ports.iter().any(|p| p.on_lb(false)) {
        return Err(Error::InvalidArgument(
            "kind clusters have no load balancer for port mappings: publish ports on a node (\"server:0\", \"agent:N\")".into(),
        ));
    }
    if plan.registry.create.is_some() || !plan.registry.use_existing.is_empty() {
        return Err(Error::InvalidArgument(
            "registries are wired into k3d clusters only; the kind provider does not support them yet".into(),
        ));
    }
    if !plan.k3s_args.is_empty() {
        return Err(Error::InvalidArgument(
            "k3sArgs apply to k3d clusters only; the kind provider takes none".into(),
        ));
    }
    Ok(())
}

pub async fn create(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Created> {
    check_plan(plan)?;
    guard.check("checking the node image")?;
    docker::ensure_image(cx.docker, &plan.image, guard)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    ensure_network(cx, guard)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    steps::with_rollback(
        cluster,
        guard,
        build(cx, cluster, plan, guard),
        |rb| async move { remove_objects(cx, cluster, &rb).await },
    )
    .await
}

fn is_ipv6_unavailable(msg: &str) -> bool {
    msg.contains("Cannot read IPv6 setup for bridge")
        || msg.contains("ip6tables")
        || msg.contains("IPv6")
        || msg.contains("ipv6")
}

/// The shared `kind` network: reused when present (never validated or removed,
/// as kind does), else created with masquerade, the default bridge's MTU and an
/// IPv6 ULA subnet — IPv4 only when the engine cannot do IPv6.
async fn ensure_network(cx: &ProviderCtx<'_>, guard: &Guard) -> Result<()> {
    let step = "ensuring the docker network kind";
    guard.check(step)?;
    match cx
        .docker
        .inspect_network(spec::NETWORK, None::<InspectNetworkOptions>)
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if is_docker_not_found(&e) => {}
        Err(e) => return Err(Error::docker(step, e)),
    }
    let mut options = HashMap::from([(
        "com.docker.network.bridge.enable_ip_masquerade".to_string(),
        "true".to_string(),
    )]);
    if let Ok(bridge) = cx
        .docker
        .inspect_network("bridge", None::<InspectNetworkOptions>)
        .await
    {
        if let Some(mtu) = bridge
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.driver.mtu"))
            .filter(|m| m.parse::<u32>().is_ok_and(|m| m > 0))
        {
            options.insert("com.docker.network.driver.mtu".into(), mtu.clone());
        }
    }
    let request = |subnet: Option<&str>| NetworkCreateRequest {
        name: spec::NETWORK.into(),
        driver: Some("bridge".into()),
        enable_ipv6: subnet.map(|_| true),
        ipam: subnet.map(|s| Ipam {
            driver: Some("default".into()),
            config: Some(vec![IpamConfig {
                subnet: Some(s.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        options: Some(options.clone()),
        ..Default::default()
    };
    for subnet in spec::ULA_SUBNETS.iter().map(|s| Some(*s)).chain([None]) {
        match cx.docker.create_network(request(subnet)).await {
            Ok(_) => {
                guard.report(&format!(
                    "created network kind ({})",
                    subnet.unwrap_or("IPv4 only")
                ));
                return Ok(());
            }
            // created concurrently by another create: use it
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if subnet.is_some()
                    && (message.contains("overlap") || is_ipv6_unavailable(&message)) =>
            {
                if is_ipv6_unavailable(&message) {
                    // skip the remaining ULA attempts: go straight to IPv4 only
                    match cx.docker.create_network(request(None)).await {
                        Ok(_)
                        | Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 409,
                            ..
                        }) => return Ok(()),
                        Err(e) => return Err(Error::docker(step, e)),
                    }
                }
            }
            Err(e) => return Err(Error::docker(step, e)),
        }
    }
    Err(Error::Internal(format!(
        "{step}: exhausted attempts trying to find a non-overlapping subnet"
    )))
}

async fn start_and_boot(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    name: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<()> {
    steps::start_node(cx, cluster, name, plan.api_port, guard).await?;
    steps::wait_for_line(cx, cluster, name, &spec::BOOT_LINES, guard).await
}

/// Runs a command in a node as a step of the create; errors name the step.
async fn run(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    node: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
    guard: &Guard,
) -> Result<String> {
    let step = format!("cluster {cluster}: running `{}` in {node}", cmd.join(" "));
    guard.check(&step)?;
    guard
        .wait(
            &step,
            exec_ok(cx.docker, node, cmd, stdin, cx.config.privileged),
        )
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))
}

/// `nodeutils.WriteFile`: mkdir -p the directory, then copy stdin to the file.
async fn write_file(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    node: &str,
    path: &str,
    content: &str,
    guard: &Guard,
) -> Result<()> {
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or("/");
    run(cx, cluster, node, &["mkdir", "-p", dir], None, guard).await?;
    run(
        cx,
        cluster,
        node,
        &["cp", "/dev/stdin", path],
        Some(content.as_bytes()),
        guard,
    )
    .await?;
    Ok(())
}

fn node_ip(info: &bollard::models::ContainerInspectResponse) -> Option<String> {
    info.network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .get(spec::NETWORK)?
        .ip_address
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// kind's restart policy, set once the cluster is up.
fn on_failure_once() -> RestartPolicy {
    RestartPolicy {
        name: Some(RestartPolicyNameEnum::ON_FAILURE),
        maximum_retry_count: Some(1),
    }
}

async fn build(
    cx: &ProviderCtx<'_>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Created> {
    let spec = ClusterSpec {
        cluster,
        plan,
        config: cx.config,
    };
    // every container exists before any starts
    let nodes = spec.nodes();
    let bodies = nodes
        .iter()
        .map(|n| (spec::node_name(cluster, *n), spec.container(*n)))
        .collect();
    steps::create_nodes(cx, cluster, bodies, guard).await?;

    let names: Vec<String> = nodes.iter().map(|n| spec::node_name(cluster, *n)).collect();
    let cp = spec::node_name(
        cluster,
        NodeRef {
            role: Role::Server,
            index: 0,
        },
    );
    let workers: Vec<String> = nodes
        .iter()
        .filter(|n| n.role == Role::Agent)
        .map(|n| spec::node_name(cluster, *n))
        .collect();
    futures_util::future::try_join_all(
        names
            .iter()
            .map(|n| start_and_boot(cx, cluster, n, plan, guard)),
    )
    .await?;

    // config: /kind/kubeadm.conf on every node, with its own IP
    let version = run(cx, cluster, &cp, &["cat", "/kind/version"], None, guard).await?;
    let version = version.trim().to_string();
    let api_host_ip = cx.config.api_host_ip.to_string();
    let writes = names.iter().map(|n| {
        let (version, api_host_ip) = (&version, &api_host_ip);
        async move {
            let info = docker::inspect(cx.docker, n).await?;
            let ip = node_ip(&info).ok_or_else(|| {
                Error::Internal(format!(
                    "cluster {cluster}: node {n} has no address on the kind network"
                ))
            })?;
            let conf = spec::kubeadm_config(cluster, n, &ip, version, api_host_ip);
            write_file(cx, cluster, n, spec::KUBEADM_CONF, &conf, guard).await
        }
    });
    futures_util::future::try_join_all(writes).await?;
    guard.report("wrote /kind/kubeadm.conf");

    let init = format!("--config={}", spec::KUBEADM_CONF);
    run(
        cx,
        cluster,
        &cp,
        &["kubeadm", "init", &init, "--skip-token-print", "--v=6"],
        None,
        guard,
    )
    .await?;
    guard.report(&format!("kubeadm init on {cp}"));
    if workers.is_empty() {
        run(
            cx,
            cluster,
            &cp,
            &[
                "kubectl",
                KUBECTL,
                "taint",
                "nodes",
                "--all",
                "node-role.kubernetes.io/control-plane-",
            ],
            None,
            guard,
        )
        .await?;
        run(
            cx,
            cluster,
            &cp,
            &[
                "kubectl",
                KUBECTL,
                "label",
                "nodes",
                "--all",
                "node.kubernetes.io/exclude-from-external-load-balancers-",
            ],
            None,
            guard,
        )
        .await?;
    }
    let cni = run(
        cx,
        cluster,
        &cp,
        &["cat", "/kind/manifests/default-cni.yaml"],
        None,
        guard,
    )
    .await?;
    let cni = if cni.contains("would you kindly template this file") {
        cni.replace("{{ .PodSubnet }}", spec::POD_SUBNET)
    } else {
        cni
    };
    run(
        cx,
        cluster,
        &cp,
        &["kubectl", "create", KUBECTL, "-f", "-"],
        Some(cni.as_bytes()),
        guard,
    )
    .await?;
    guard.report("installed CNI");
    if let Ok(storage) = run(
        cx,
        cluster,
        &cp,
        &["cat", "/kind/manifests/default-storage.yaml"],
        None,
        guard,
    )
    .await
    {
        run(
            cx,
            cluster,
            &cp,
            &["kubectl", KUBECTL, "apply", "-f", "-"],
            Some(storage.as_bytes()),
            guard,
        )
        .await?;
        guard.report("installed StorageClass");
    }
    let joins = workers.iter().map(|w| {
        run(
            cx,
            cluster,
            w,
            &["kubeadm", "join", "--config", spec::KUBEADM_CONF, "--v=6"],
            None,
            guard,
        )
    });
    futures_util::future::try_join_all(joins).await?;
    if !workers.is_empty() {
        guard.report(&format!("joined {} worker(s)", workers.len()));
    }
    finish_create(
        cx,
        cluster,
        spec::NETWORK,
        nodes.len(),
        plan.wait_ready,
        guard,
        steps::set_restart_policy(cx, cluster, &names, on_failure_once(), guard),
        read_kubeconfigs(cx, cluster, &cp),
    )
    .await
}
