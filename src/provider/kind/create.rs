//! `create` for the kind provider (kind contract §1–§2 over the Engine API):
//! images → shared `kind` network → node containers and, for several control
//! planes, the external load balancer (concurrently) → start → boot line →
//! load balancer configuration → kubeadm.conf → `kubeadm init` → (single node)
//! taint/label → certificates to the other control planes → CNI → storage class
//! → `kubeadm join` on the other control planes (one at a time), then on the
//! workers (concurrently) → restart policy → kubeconfig → every node Ready.
//! Failures remove every container made; the shared network stays.

use crate::engine::models::{
    Ipam, IpamConfig, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum,
};
use crate::engine::Engine;
use std::collections::HashMap;

use super::spec::{self, ClusterSpec};
use super::{read_kubeconfigs, remove_objects};
use crate::docker::{self, exec_ok};
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;
use crate::options::{CreatePlan, Role};
use crate::provider::query::{finish_create, reachable_kubeconfig};
use crate::provider::{steps, Created, ProviderCtx};
use crate::readiness;
use crate::registry::{self, RegistryRef};

const KUBECTL: &str = "--kubeconfig=/etc/kubernetes/admin.conf";

/// What kind cannot do (yet) with these options, checked before any Docker call.
pub fn check_plan(plan: &CreatePlan) -> Result<()> {
    // kind decides the load balancer from the control-plane count alone
    match plan.load_balancer {
        Some(true) if !spec::has_lb(plan.servers) => {
            return Err(Error::InvalidArgument(
                "kind creates its external load balancer only for several control planes: use servers > 1, or leave loadBalancer unset".into(),
            ))
        }
        Some(false) if spec::has_lb(plan.servers) => {
            return Err(Error::InvalidArgument(format!(
                "{} control planes need kind's external load balancer (their one API endpoint): leave loadBalancer unset",
                plan.servers
            )))
        }
        _ => {}
    }
    if plan.ports.iter().any(|p| p.on_lb(false)) {
        return Err(Error::InvalidArgument(
            "kind's load balancer carries the API only: publish ports on a node (\"server:0\", \"agent:N\")".into(),
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
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<Created> {
    check_plan(plan)?;
    guard.check("checking the node image")?;
    docker::ensure_image(cx.docker, &plan.image, guard)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
    if spec::has_lb(plan.servers) {
        guard.check("checking the load balancer image")?;
        docker::ensure_image(cx.docker, &cx.config.lb_image, guard)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}: the external load balancer")))?;
    }
    let registries = steps::check_registries(cx, cluster, plan, guard).await?;
    ensure_network(cx, guard)
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))?;
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

fn is_ipv6_unavailable(msg: &str) -> bool {
    msg.contains("Cannot read IPv6 setup for bridge")
        || msg.contains("ip6tables")
        || msg.contains("IPv6")
        || msg.contains("ipv6")
}

/// The shared `kind` network: reused when present (never validated or removed,
/// as kind does), else created with masquerade, the default bridge's MTU and an
/// IPv6 ULA subnet — IPv4 only when the engine cannot do IPv6.
async fn ensure_network(cx: &ProviderCtx<'_, impl Engine>, guard: &Guard) -> Result<()> {
    let step = "ensuring the docker network kind";
    guard.check(step)?;
    match cx.docker.inspect_network(spec::NETWORK).await {
        Ok(_) => return Ok(()),
        Err(e) if is_docker_not_found(&e) => {}
        Err(e) => return Err(Error::docker(step, e)),
    }
    let mut options = HashMap::from([(
        "com.docker.network.bridge.enable_ip_masquerade".to_string(),
        "true".to_string(),
    )]);
    if let Ok(bridge) = cx.docker.inspect_network("bridge").await {
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
                return keep_one_kind_network(cx, guard).await;
            }
            // created concurrently by another create: use it
            Err(crate::engine::EngineError::DockerResponseServerError {
                status_code: 409, ..
            }) => return Ok(()),
            Err(crate::engine::EngineError::DockerResponseServerError { message, .. })
                if subnet.is_some()
                    && (message.contains("overlap") || is_ipv6_unavailable(&message)) =>
            {
                if is_ipv6_unavailable(&message) {
                    // skip the remaining ULA attempts: go straight to IPv4 only
                    match cx.docker.create_network(request(None)).await {
                        Ok(_) => return keep_one_kind_network(cx, guard).await,
                        Err(crate::engine::EngineError::DockerResponseServerError {
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

/// Two processes creating the first kind cluster at the same moment can both
/// create `kind` (the engine lets networks share a name, and then every call
/// by that name is ambiguous). As kind does, every creator keeps the same one
/// (the oldest, then the smallest ID) and removes the others; removing one
/// another process removed already is fine.
async fn keep_one_kind_network(cx: &ProviderCtx<'_, impl Engine>, guard: &Guard) -> Result<()> {
    let opts = crate::engine::query::ListNetworksOptions {
        filters: Some(HashMap::from([(
            "name".to_string(),
            vec![spec::NETWORK.to_string()],
        )])),
    };
    let mut same_name: Vec<_> = cx
        .docker
        .list_networks(opts)
        .await
        .map_err(|e| Error::docker("listing the docker networks named kind", e))?
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(spec::NETWORK))
        .collect();
    // by the time Docker gives (its fractions drop trailing zeros: not as text)
    let created = |n: &crate::engine::models::Network| {
        n.created
            .as_deref()
            .and_then(docker::parse_timestamp)
            .unwrap_or((i64::MAX, 0))
    };
    same_name.sort_by(|a, b| (created(a), &a.id).cmp(&(created(b), &b.id)));
    for extra in same_name.iter().skip(1) {
        let Some(id) = extra.id.as_deref() else {
            continue;
        };
        match cx.docker.remove_network(id).await {
            Ok(()) => guard.report(&format!("removed a duplicate network kind ({id})")),
            Err(e) if is_docker_not_found(&e) => {}
            Err(e) => return Err(Error::docker("removing a duplicate docker network kind", e)),
        }
    }
    Ok(())
}

async fn start_and_boot(
    cx: &ProviderCtx<'_, impl Engine>,
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
    cx: &ProviderCtx<'_, impl Engine>,
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
    cx: &ProviderCtx<'_, impl Engine>,
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

fn node_ip(info: &crate::engine::models::ContainerInspectResponse) -> Option<String> {
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
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    plan: &CreatePlan,
    registries: &[RegistryRef],
    creation: &str,
    guard: &Guard,
) -> Result<Created> {
    let spec = ClusterSpec {
        cluster,
        creation,
        plan,
        config: cx.config,
    };
    let nodes = spec.nodes();
    let lb = spec.has_lb().then(|| spec::lb_name(cluster));
    // every container exists before any starts
    let mut bodies: Vec<_> = nodes
        .iter()
        .map(|n| (spec::node_name(cluster, *n), spec.container(*n)))
        .collect();
    if let Some(lb) = &lb {
        bodies.push((lb.clone(), spec.load_balancer()));
    }
    let names_of = |role: Role| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| n.role == role)
            .map(|n| spec::node_name(cluster, *n))
            .collect()
    };
    let names: Vec<String> = nodes.iter().map(|n| spec::node_name(cluster, *n)).collect();
    let control_planes = names_of(Role::Server);
    let workers = names_of(Role::Agent);
    let (cp, secondaries) = control_planes
        .split_first()
        .ok_or_else(|| Error::InvalidArgument("a kind cluster needs a control plane".into()))?;

    // The first control plane's container is the cluster name's claim (a
    // container name is unique): made alone and first, so a create racing
    // another of the same name from another process loses having made nothing.
    let rest = bodies.split_off(1);
    steps::create_nodes(cx, cluster, bodies, guard)
        .await
        .map_err(|e| match e.code() {
            crate::ErrorCode::AlreadyExists => e.with_suffix(
                "another process is creating this cluster, or an interrupted create left its first node (`delete` the cluster to remove it)",
            ),
            _ => e,
        })?;
    // the registries come up while the nodes are created, start and boot: a
    // node needs a registry only when it pulls (join: both sides finish, so a
    // rollback sees whatever they made)
    let registries_up =
        steps::attach_registries(cx, cluster, plan, registries, spec::NETWORK, guard);
    let nodes_up = async {
        steps::create_nodes(cx, cluster, rest, guard).await?;
        start_all(cx, cluster, &names, lb.as_deref(), plan, guard).await?;
        use_registries(cx, cluster, &names, registries, guard).await
    };
    let (regs, started) = futures_util::future::join(registries_up, nodes_up).await;
    started?;
    regs?;
    if let Some(lb) = &lb {
        configure_load_balancer(cx, cluster, lb, &control_planes, guard).await?;
    }
    write_kubeadm_configs(cx, cluster, &names, &control_planes, lb.is_some(), guard).await?;
    kubeadm_init(cx, cluster, cp, nodes.len() == 1 && lb.is_none(), guard).await?;
    copy_control_plane_files(cx, cluster, cp, secondaries, guard).await?;
    install_cni_and_storage(cx, cluster, cp, guard).await?;
    // kind joins control planes one at a time (each grows the control plane the
    // next one joins), then every worker at once
    for node in secondaries {
        kubeadm_join(cx, cluster, node, guard).await?;
    }
    if !secondaries.is_empty() {
        guard.report(&format!(
            "joined {} more control-plane node(s)",
            secondaries.len()
        ));
    }
    let joins =
        futures_util::future::join_all(workers.iter().map(|w| kubeadm_join(cx, cluster, w, guard)))
            .await;
    joins.into_iter().collect::<Result<Vec<()>>>()?;
    if !workers.is_empty() {
        guard.report(&format!("joined {} worker(s)", workers.len()));
    }
    let mut restartable = names.clone();
    restartable.extend(lb.clone());
    let created = finish_create(
        cx,
        cluster,
        spec::NETWORK,
        nodes.len(),
        plan.wait_ready,
        guard,
        steps::set_restart_policy(cx, cluster, &restartable, on_failure_once(), guard),
        read_kubeconfigs(cx, cluster, cp, lb.as_deref()),
    )
    .await?;
    if !registries.is_empty() {
        publish_registries(cx, cluster, &created.kubeconfigs, registries, guard).await?;
    }
    Ok(created)
}

/// kind's local-registry recipe in every node: containerd reads registry hosts
/// from `certs.d` (patched in and restarted only where it did not), and a
/// `hosts.toml` per name sends pulls to the registry on the kind network.
pub(super) async fn use_registries(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    nodes: &[String],
    registries: &[RegistryRef],
    guard: &Guard,
) -> Result<()> {
    if registries.is_empty() {
        return Ok(());
    }
    let hosts = async {
        registry::write_containerd_hosts(cx.docker, nodes, registries)
            .await
            .map_err(|e| e.context(format!("cluster {cluster}")))
    };
    let mut patch_cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        spec::CONTAINERD_REGISTRY_PATCH.to_string(),
        "sh".to_string(),
        spec::CONTAINERD_CONFIG.to_string(),
        spec::CONTAINERD_RESTART.to_string(),
    ];
    patch_cmd.extend(
        registry::pull_endpoints(registries)
            .into_iter()
            .map(|(host, endpoint)| format!("{host}={endpoint}")),
    );
    let patch_cmd: Vec<&str> = patch_cmd.iter().map(String::as_str).collect();
    let patches = futures_util::future::join_all(
        nodes
            .iter()
            .map(|n| run(cx, cluster, n, &patch_cmd, None, guard)),
    );
    let (written, patched) = futures_util::future::join(hosts, patches).await;
    written?;
    patched.into_iter().collect::<Result<Vec<String>>>()?;
    guard.report(&format!(
        "nodes pull through registry {}",
        registries
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// The KEP-1755 ConfigMap, once the API answers (kind's recipe has no CoreDNS
/// entry: pods pull through containerd, which resolves the registry by Docker's DNS).
pub(super) async fn publish_registries(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    kubeconfigs: &crate::provider::Kubeconfigs,
    registries: &[RegistryRef],
    guard: &Guard,
) -> Result<()> {
    let reach = reachable_kubeconfig(cx, spec::NETWORK, kubeconfigs).await;
    let step = format!("cluster {cluster}: publishing the registries in the cluster");
    guard
        .wait(&step, async {
            let client = readiness::client(reach, std::time::Duration::from_secs(10)).await?;
            registry::publish_in_cluster(cx.docker, &client, spec::NETWORK, registries, false).await
        })
        .await
        .map_err(|e| e.context(format!("cluster {cluster}")))
}

/// Starts the nodes (each waited for up to systemd's boot line) and the load
/// balancer (not waited for, as kind does not): every start finishes before the
/// results are collected, so a failure leaves nothing half-started behind.
async fn start_all(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    nodes: &[String],
    lb: Option<&str>,
    plan: &CreatePlan,
    guard: &Guard,
) -> Result<()> {
    let node_starts = futures_util::future::join_all(
        nodes
            .iter()
            .map(|n| start_and_boot(cx, cluster, n, plan, guard)),
    );
    let lb_start = async {
        match lb {
            Some(lb) => steps::start_node(cx, cluster, lb, plan.api_port, guard).await,
            None => Ok(()),
        }
    };
    let (started, lb_started) = futures_util::future::join(node_starts, lb_start).await;
    lb_started?;
    started.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

/// kind's loadbalancer action: envoy's listener and its cluster of every
/// control plane, written as `*.tmp` and renamed over the files envoy watches,
/// so it never reads half a file.
async fn configure_load_balancer(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    lb: &str,
    control_planes: &[String],
    guard: &Guard,
) -> Result<()> {
    let [(lds_tmp, lds), (cds_tmp, cds)] = spec::lb_config_paths();
    write_file(cx, cluster, lb, &lds_tmp, &spec::lb_lds(), guard).await?;
    write_file(
        cx,
        cluster,
        lb,
        &cds_tmp,
        &spec::lb_cds(control_planes),
        guard,
    )
    .await?;
    let swap = format!("chmod 666 {cds_tmp} {lds_tmp} && mv {cds_tmp} {cds} && mv {lds_tmp} {lds}");
    run(cx, cluster, lb, &["sh", "-c", &swap], None, guard).await?;
    guard.report(&format!("configured the external load balancer {lb}"));
    Ok(())
}

/// kind's config action: `/kind/kubeadm.conf` on every node, with its own
/// address, and the control-plane join for every control plane but the first.
async fn write_kubeadm_configs(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    names: &[String],
    control_planes: &[String],
    lb: bool,
    guard: &Guard,
) -> Result<()> {
    let cp = &control_planes[0];
    let version = run(cx, cluster, cp, &["cat", "/kind/version"], None, guard).await?;
    let version = version.trim().to_string();
    // the API's certificate covers where clients reach it: the published
    // address and, for a remote engine, its host (hostAddress)
    let mut api_sans = vec![cx.config.api_host_ip.to_string()];
    api_sans.extend(cx.config.host_address.clone());
    let writes = names.iter().map(|n| {
        let (version, api_sans) = (&version, &api_sans);
        let secondary = n != cp && control_planes.contains(n);
        async move {
            let info = docker::inspect(cx.docker, n).await?;
            let ip = node_ip(&info).ok_or_else(|| {
                Error::Internal(format!(
                    "cluster {cluster}: node {n} has no address on the kind network"
                ))
            })?;
            let conf = spec::kubeadm_config(cluster, n, &ip, version, api_sans, lb, secondary);
            write_file(cx, cluster, n, spec::KUBEADM_CONF, &conf, guard).await
        }
    });
    let written = futures_util::future::join_all(writes).await;
    written.into_iter().collect::<Result<Vec<()>>>()?;
    guard.report("wrote /kind/kubeadm.conf");
    Ok(())
}

/// kind's kubeadminit action on the bootstrap control plane; a cluster of one
/// node also schedules workloads on it.
async fn kubeadm_init(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    cp: &str,
    single_node: bool,
    guard: &Guard,
) -> Result<()> {
    let init = format!("--config={}", spec::KUBEADM_CONF);
    run(
        cx,
        cluster,
        cp,
        &["kubeadm", "init", &init, "--skip-token-print", "--v=6"],
        None,
        guard,
    )
    .await?;
    guard.report(&format!("kubeadm init on {cp}"));
    if single_node {
        for cmd in [
            [
                "kubectl",
                KUBECTL,
                "taint",
                "nodes",
                "--all",
                "node-role.kubernetes.io/control-plane-",
            ],
            [
                "kubectl",
                KUBECTL,
                "label",
                "nodes",
                "--all",
                "node.kubernetes.io/exclude-from-external-load-balancers-",
            ],
        ] {
            run(cx, cluster, cp, &cmd, None, guard).await?;
        }
    }
    Ok(())
}

/// What a joining control plane must share with the first one (the cluster CAs,
/// the service-account keys, the admin kubeconfig), copied as kind copies them.
/// Each file is read once; the copies to the joining nodes run together.
async fn copy_control_plane_files(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    from: &str,
    to: &[String],
    guard: &Guard,
) -> Result<()> {
    if to.is_empty() {
        return Ok(());
    }
    let reads = futures_util::future::join_all(
        spec::SHARED_CONTROL_PLANE_FILES
            .iter()
            .map(|f| async move { run(cx, cluster, from, &["cat", f], None, guard).await }),
    )
    .await;
    let contents = reads.into_iter().collect::<Result<Vec<String>>>()?;
    let copies = to.iter().map(|node| {
        let contents = &contents;
        async move {
            for (path, content) in spec::SHARED_CONTROL_PLANE_FILES.iter().zip(contents) {
                write_file(cx, cluster, node, path, content, guard).await?;
            }
            Ok::<(), Error>(())
        }
    });
    let copied = futures_util::future::join_all(copies).await;
    copied.into_iter().collect::<Result<Vec<()>>>()?;
    guard.report(&format!(
        "copied the cluster certificates to {} control-plane node(s)",
        to.len()
    ));
    Ok(())
}

/// kind's installcni and installstorage actions, on the first control plane.
async fn install_cni_and_storage(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    cp: &str,
    guard: &Guard,
) -> Result<()> {
    let cni = run(
        cx,
        cluster,
        cp,
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
        cp,
        &["kubectl", "create", KUBECTL, "-f", "-"],
        Some(cni.as_bytes()),
        guard,
    )
    .await?;
    guard.report("installed CNI");
    // a node image without the manifest (cat exits non-zero) gets no
    // StorageClass, as in kind; an engine failure is the create's failure
    let storage = match run(
        cx,
        cluster,
        cp,
        &["cat", "/kind/manifests/default-storage.yaml"],
        None,
        guard,
    )
    .await
    {
        Ok(storage) => Some(storage),
        Err(e) if e.code() == crate::ErrorCode::NodeFailed => None,
        Err(e) => return Err(e),
    };
    if let Some(storage) = storage {
        run(
            cx,
            cluster,
            cp,
            &["kubectl", KUBECTL, "apply", "-f", "-"],
            Some(storage.as_bytes()),
            guard,
        )
        .await?;
        guard.report("installed StorageClass");
    }
    Ok(())
}

async fn kubeadm_join(
    cx: &ProviderCtx<'_, impl Engine>,
    cluster: &str,
    node: &str,
    guard: &Guard,
) -> Result<()> {
    run(
        cx,
        cluster,
        node,
        &["kubeadm", "join", "--config", spec::KUBEADM_CONF, "--v=6"],
        None,
        guard,
    )
    .await
    .map(|_| ())
}
