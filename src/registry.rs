//! Local image registries as k3d makes them (a `registry:2` container with k3d's
//! registry labels, published on a host port, its data in a volume of its own),
//! standalone or made by a cluster create, and wired into clusters before their
//! nodes first start: `/etc/rancher/k3s/registries.yaml` mirrors the registry's
//! names to it on the cluster network, Docker's DNS resolves its name and
//! aliases there, and (once the API answers) the KEP-1755 ConfigMap and
//! CoreDNS's `NodeHosts` say where it is. No node restart, no sleep.

use crate::engine::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, NetworkConnectRequest,
    NetworkDisconnectRequest, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use crate::engine::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::docker::{self, summary_label, summary_name};
use crate::error::{is_docker_not_found, Error, Result};
use crate::guard::Guard;

/// The distribution registry k3d runs (`k3d registry create`).
pub const DEFAULT_REGISTRY_IMAGE: &str = "docker.io/library/registry:2";
/// The port the registry listens on inside its container.
pub const REGISTRY_PORT: u16 = 5000;
/// KECS's shared registry (its `ensureRegistry`).
pub const SHARED_NAME: &str = "kecs-registry";
pub const SHARED_ALIAS: &str = "registry.kecs.local";
/// Where k3s reads its registry configuration.
pub const K3S_REGISTRIES_PATH: &str = "/etc/rancher/k3s/registries.yaml";
const DATA_PATH: &str = "/var/lib/registry";
const VOLUME_LABEL: &str = "kecs.registry.volume";
/// The distribution registry's line once its HTTP listener is up.
const REGISTRY_LISTENING: &str = "listening on";

/// A registry to create (camelCase JSON). `hostPort` 0 = 5000.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistryCreate {
    /// The container name, used verbatim (KECS: `kecs-registry`; k3d's CLI
    /// prefixes `k3d-`).
    pub name: String,
    pub host_port: u16,
    /// Default 127.0.0.1: a registry on every interface serves anyone who can
    /// reach this machine, with no authentication.
    pub host_ip: Option<String>,
    /// More names (`registry.kecs.local`) it answers to on cluster networks.
    pub aliases: Vec<String>,
}

/// The registries a cluster create makes or uses (k3d's `--registry-create`,
/// `--registry-use`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegistryOptions {
    pub create: Option<RegistryCreate>,
    /// Names of registries that exist already; never deleted with the cluster.
    #[serde(rename = "use")]
    pub use_existing: Vec<String>,
}

/// One registry as Docker shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryInfo {
    pub name: String,
    pub image: String,
    pub host_ip: String,
    pub host_port: u16,
    pub running: bool,
    /// The cluster whose create made it ("" for a standalone registry).
    pub cluster: String,
    pub aliases: Vec<String>,
}

/// What a cluster needs to know to use a registry.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryRef {
    pub name: String,
    pub host_port: u16,
    pub aliases: Vec<String>,
}

impl RegistryCreate {
    pub fn validate(&self) -> Result<RegistryRef> {
        validate_name(&self.name)?;
        if let Some(ip) = &self.host_ip {
            ip.parse::<std::net::IpAddr>().map_err(|_| {
                Error::InvalidArgument(format!("registry hostIp {ip:?} is not an IP address"))
            })?;
        }
        for a in &self.aliases {
            validate_name(a)?;
        }
        Ok(RegistryRef {
            name: self.name.clone(),
            host_port: self.port(),
            aliases: self.aliases.clone(),
        })
    }

    pub fn port(&self) -> u16 {
        if self.host_port == 0 {
            REGISTRY_PORT
        } else {
            self.host_port
        }
    }

    fn ip(&self) -> String {
        self.host_ip.clone().unwrap_or_else(|| "127.0.0.1".into())
    }
}

/// A container name / DNS name: letters, digits, '.', '-', '_', at most 63.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "registry name {name:?} must be 1-63 letters, digits, '.', '-' or '_', starting with a letter or digit"
        )))
    }
}

/// k3s's `registries.yaml` for `regs` (k3d's `RegistryGenerateK3sConfig`):
/// `localhost:<hostPort>`, `<name>:<hostPort>`, `<name>:5000` and each alias
/// mirror to `http://<name>:5000` on the cluster network.
pub fn k3s_registries_yaml(regs: &[RegistryRef]) -> String {
    let mut out = String::from("mirrors:\n");
    for r in regs {
        let endpoint = format!("http://{}:{REGISTRY_PORT}", r.name);
        for h in pull_hosts(r) {
            out.push_str(&format!(
                "  \"{h}\":\n    endpoint:\n    - {endpoint}\n    rewrite: {{}}\n"
            ));
        }
    }
    out.push_str("configs: {}\nauths: {}\n");
    out
}

/// Writes k3s's `registries.yaml` for `regs` into every one of `nodes` (all
/// writes finish; the first error is returned).
pub async fn write_k3s_config(
    docker: &impl Engine,
    nodes: &[String],
    regs: &[RegistryRef],
) -> Result<()> {
    let yaml = k3s_registries_yaml(regs);
    let writes = nodes
        .iter()
        .map(|n| docker::write_file(docker, n, K3S_REGISTRIES_PATH, yaml.as_bytes(), 0o644));
    futures_util::future::join_all(writes)
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()
        .map(|_| ())
}

/// The names a cluster pulls a registry's images by (k3d's set, kind's
/// `localhost:<hostPort>` among them): `localhost:<hostPort>`,
/// `<name>:<hostPort>`, `<name>:5000` and each alias (`:<hostPort>` unless it
/// has a port).
fn pull_hosts(r: &RegistryRef) -> Vec<String> {
    let mut hosts = vec![
        format!("localhost:{}", r.host_port),
        format!("{}:{}", r.name, r.host_port),
        format!("{}:{REGISTRY_PORT}", r.name),
    ];
    for a in &r.aliases {
        hosts.push(if a.contains(':') {
            a.clone()
        } else {
            format!("{a}:{}", r.host_port)
        });
    }
    hosts.dedup();
    hosts
}

/// `(pulled-by name, endpoint on the cluster network)` for every name each
/// registry goes by.
pub fn pull_endpoints(regs: &[RegistryRef]) -> Vec<(String, String)> {
    regs.iter()
        .flat_map(|r| {
            let endpoint = format!("http://{}:{REGISTRY_PORT}", r.name);
            pull_hosts(r)
                .into_iter()
                .map(move |h| (h, endpoint.clone()))
        })
        .collect()
}

/// containerd's registry host directory (kind's local-registry recipe:
/// `config_path`, then one `hosts.toml` per pulled-by name).
pub const CONTAINERD_CERTS_D: &str = "/etc/containerd/certs.d";

/// `(path, content)` of the `hosts.toml` files that send pulls of each name a
/// registry goes by to the registry on the cluster network, as kind's recipe
/// writes them.
pub fn containerd_hosts_files(regs: &[RegistryRef]) -> Vec<(String, String)> {
    regs.iter()
        .flat_map(|r| {
            let endpoint = format!("[host.\"http://{}:{REGISTRY_PORT}\"]\n", r.name);
            pull_hosts(r).into_iter().map(move |h| {
                (
                    format!("{CONTAINERD_CERTS_D}/{h}/hosts.toml"),
                    endpoint.clone(),
                )
            })
        })
        .collect()
}

/// Writes the `hosts.toml` files for `regs` into every one of `nodes` (all
/// writes finish; the first error is returned). containerd reads them at each
/// pull: no restart.
pub async fn write_containerd_hosts(
    docker: &impl Engine,
    nodes: &[String],
    regs: &[RegistryRef],
) -> Result<()> {
    let files = containerd_hosts_files(regs);
    let writes = nodes.iter().flat_map(|n| {
        files.iter().map(move |(path, content)| {
            docker::write_file(docker, n, path, content.as_bytes(), 0o644)
        })
    });
    futures_util::future::join_all(writes)
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()
        .map(|_| ())
}

/// The KEP-1755 `localRegistryHosting.v1` document for the first registry.
pub fn local_registry_hosting(r: &RegistryRef) -> String {
    format!(
        "host: localhost:{}\nhostFromClusterNetwork: {}:{REGISTRY_PORT}\nhostFromContainerRuntime: {}:{REGISTRY_PORT}\nhelp: https://k3d.io/stable/usage/registries/#using-a-local-registry\n",
        r.host_port, r.name, r.name
    )
}

/// The registry's container body: k3d's registry labels, the port on
/// `hostIp:hostPort`, its data volume, `unless-stopped`, on the default bridge.
pub fn container_body(opts: &RegistryCreate, image: &str, cluster: &str) -> ContainerCreateBody {
    let port = opts.port();
    let labels = HashMap::from([
        ("app".to_string(), "k3d".to_string()),
        (
            "k3d.version".to_string(),
            crate::provider::k3d::spec::K3D_VERSION_LABEL.to_string(),
        ),
        ("k3d.role".to_string(), "registry".to_string()),
        ("k3d.cluster".to_string(), cluster.to_string()),
        ("k3d.registry.host".to_string(), String::new()),
        ("k3d.registry.hostIP".to_string(), opts.ip()),
        ("k3s.registry.port.external".to_string(), port.to_string()),
        (
            "k3s.registry.port.internal".to_string(),
            REGISTRY_PORT.to_string(),
        ),
        ("kecs.registry.aliases".to_string(), opts.aliases.join(",")),
    ]);
    let ports = HashMap::from([(
        format!("{REGISTRY_PORT}/tcp"),
        Some(vec![crate::provider::binding(&opts.ip(), port)]),
    )]);
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels),
        exposed_ports: Some(vec![format!("{REGISTRY_PORT}/tcp")]),
        host_config: Some(HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            port_bindings: Some(ports),
            binds: Some(vec![format!("{}:{DATA_PATH}", volume_name(&opts.name))]),
            network_mode: Some("bridge".into()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                "bridge".to_string(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    }
}

fn volume_name(registry: &str) -> String {
    format!("{registry}-data")
}

/// Every registry container (k3d's role label).
pub async fn all(docker: &impl Engine) -> Result<Vec<ContainerSummary>> {
    docker::containers_with_labels(docker, &[("app", "k3d"), ("k3d.role", "registry")]).await
}

pub async fn find(docker: &impl Engine, name: &str) -> Result<Option<ContainerSummary>> {
    Ok(all(docker)
        .await?
        .into_iter()
        .find(|c| summary_name(c) == name))
}

pub fn info_of(c: &ContainerSummary) -> RegistryInfo {
    let published = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.private_port == REGISTRY_PORT && p.public_port.is_some());
    RegistryInfo {
        name: summary_name(c),
        image: c.image.clone().unwrap_or_default(),
        host_ip: published
            .and_then(|p| p.ip.clone())
            .or_else(|| summary_label(c, "k3d.registry.hostIP").map(String::from))
            .unwrap_or_default(),
        host_port: published
            .and_then(|p| p.public_port)
            .or_else(|| summary_label(c, "k3s.registry.port.external").and_then(|p| p.parse().ok()))
            .unwrap_or(REGISTRY_PORT),
        running: crate::provider::lifecycle::is_running(c),
        cluster: summary_label(c, "k3d.cluster")
            .unwrap_or_default()
            .to_string(),
        aliases: summary_label(c, "kecs.registry.aliases")
            .unwrap_or_default()
            .split(',')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
    }
}

impl From<RegistryInfo> for RegistryRef {
    fn from(info: RegistryInfo) -> RegistryRef {
        RegistryRef {
            name: info.name,
            host_port: info.host_port,
            aliases: info.aliases,
        }
    }
}

/// The reference a cluster uses for an existing registry `name`.
pub async fn reference(docker: &impl Engine, name: &str) -> Result<RegistryRef> {
    let c = find(docker, name).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "registry {name} does not exist (create it first, or use registry.create)"
        ))
    })?;
    Ok(info_of(&c).into())
}

/// KECS's shared registry, created standalone on first use (so no cluster
/// delete removes it) and started when it was stopped.
pub async fn ensure_shared(
    docker: &impl Engine,
    image: &str,
    port: u16,
    guard: &Guard,
) -> Result<()> {
    match find(docker, SHARED_NAME).await? {
        Some(c) if crate::provider::lifecycle::is_running(&c) => Ok(()),
        Some(_) => docker
            .start_container(SHARED_NAME)
            .await
            .or_else(|e| match e {
                crate::engine::EngineError::DockerResponseServerError {
                    status_code: 304, ..
                } => Ok(()),
                e => Err(Error::docker(format!("starting registry {SHARED_NAME}"), e)),
            }),
        None => {
            let opts = RegistryCreate {
                name: SHARED_NAME.into(),
                host_port: port,
                host_ip: None,
                aliases: vec![SHARED_ALIAS.into()],
            };
            match create(docker, &opts, image, "", guard).await {
                // made concurrently by another manager: use it
                Ok(_) => Ok(()),
                Err(e) if e.code() == crate::ErrorCode::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

/// Creates and starts a registry (labelled with `cluster` when a cluster create
/// makes it). A failure removes what it made. AlreadyExists when the name is
/// taken; a busy host port is InvalidArgument.
pub async fn create(
    docker: &impl Engine,
    opts: &RegistryCreate,
    image: &str,
    cluster: &str,
    guard: &Guard,
) -> Result<RegistryInfo> {
    opts.validate()?;
    let name = &opts.name;
    let step = format!("creating registry {name}");
    guard.check(&step)?;
    if find(docker, name).await?.is_some() {
        return Err(Error::AlreadyExists(format!(
            "registry {name} already exists"
        )));
    }
    docker::ensure_image(docker, image, guard)
        .await
        .map_err(|e| e.context(format!("registry {name}")))?;
    let volume = VolumeCreateRequest {
        name: Some(volume_name(name)),
        labels: Some(HashMap::from([
            ("app".to_string(), "k3d".to_string()),
            (VOLUME_LABEL.to_string(), name.clone()),
        ])),
        ..Default::default()
    };
    // a volume of that name that exists already is someone's data: never ours
    // to remove on failure
    let volume_existed = docker.inspect_volume(&volume_name(name)).await.is_ok();
    docker
        .create_volume(volume)
        .await
        .map_err(|e| Error::docker(&step, e))?;
    let made = async {
        let create = crate::engine::query::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        docker
            .create_container(create, container_body(opts, image, cluster))
            .await
            .map_err(|e| match e {
                crate::engine::EngineError::DockerResponseServerError {
                    status_code: 409, ..
                } => Error::AlreadyExists(format!("a container named {name} already exists")),
                e => Error::docker(&step, e),
            })?;
        match docker.start_container(name).await {
            Ok(()) => Ok(()),
            Err(crate::engine::EngineError::DockerResponseServerError { message, .. })
                if message.contains("already allocated") || message.contains("already in use") =>
            {
                Err(Error::InvalidArgument(format!(
                    "registry {name}: host port {} is already in use: {message}",
                    opts.port()
                )))
            }
            Err(e) => Err(Error::docker(format!("starting registry {name}"), e)),
        }?;
        // pushes work as soon as this returns: the registry logs its listener
        let step = format!("waiting for registry {name} to listen");
        guard
            .wait(
                &step,
                docker::wait_for_log_line(docker, name, &[REGISTRY_LISTENING], 0),
            )
            .await
            .map(|_| ())
    };
    if let Err(e) = made.await {
        // a container of that name made meanwhile by someone else stays theirs
        if e.code() != crate::error::ErrorCode::AlreadyExists {
            let _ = docker::remove_containers(docker, std::slice::from_ref(name), guard).await;
            if !volume_existed {
                let _ = docker::remove_volumes_with_labels(
                    docker,
                    &[("app", "k3d"), (VOLUME_LABEL, name)],
                    guard,
                )
                .await;
            }
        }
        return Err(e);
    }
    guard.report(&format!("created registry {name}"));
    let c = find(docker, name)
        .await?
        .ok_or_else(|| Error::Internal(format!("registry {name} vanished after its start")))?;
    Ok(info_of(&c))
}

/// Removes a registry and its data volume; Ok(false) when there is none.
pub async fn delete(docker: &impl Engine, name: &str, guard: &Guard) -> Result<bool> {
    if find(docker, name).await?.is_none() {
        return Ok(false);
    }
    delete_container_and_volume(docker, name, guard).await?;
    Ok(true)
}

async fn delete_container_and_volume(
    docker: &impl Engine,
    name: &str,
    guard: &Guard,
) -> Result<()> {
    docker::remove_containers(docker, &[name.to_string()], guard).await?;
    docker::remove_volumes_with_labels(docker, &[("app", "k3d"), (VOLUME_LABEL, name)], guard).await
}

/// Attaches the registry to a cluster network under its name and aliases, so
/// every node resolves them through Docker's DNS (no /etc/hosts edits).
pub async fn connect(docker: &impl Engine, reg: &RegistryRef, network: &str) -> Result<()> {
    let req = NetworkConnectRequest {
        container: reg.name.clone(),
        endpoint_config: Some(EndpointSettings {
            aliases: Some(reg.aliases.iter().map(|a| host_of(a).to_string()).collect()),
            ..Default::default()
        }),
    };
    match docker.connect_network(network, req).await {
        Ok(()) => Ok(()),
        // already attached
        Err(crate::engine::EngineError::DockerResponseServerError {
            status_code: 403 | 409,
            ..
        }) => Ok(()),
        Err(e) => Err(Error::docker(
            format!("connecting registry {} to network {network}", reg.name),
            e,
        )),
    }
}

fn host_of(alias: &str) -> &str {
    alias.split(':').next().unwrap_or(alias)
}

/// Detaches every registry from `network` before it goes; a registry a cluster
/// create made and that no other cluster network holds any more is deleted with
/// its data (k3d deletes a cluster's own registry, never a standalone one).
pub async fn release_network(
    docker: &impl Engine,
    network: &str,
    cluster: &str,
    guard: &Guard,
) -> Result<()> {
    let regs = all(docker).await?;
    for c in regs {
        let name = summary_name(&c);
        let nets: Vec<String> = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        let attached = nets.iter().any(|n| n == network);
        // by ID: two networks of one name (racing creates) make the name ambiguous
        let network_ref = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(network))
            .and_then(|e| e.network_id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| network.to_string());
        let made_by_a_create = summary_label(&c, "k3d.cluster").is_some_and(|c| !c.is_empty());
        let mine = summary_label(&c, "k3d.cluster") == Some(cluster);
        if !attached && !mine {
            continue;
        }
        if attached {
            let req = NetworkDisconnectRequest {
                container: name.clone(),
                force: Some(true),
            };
            match docker.disconnect_network(&network_ref, req).await {
                Ok(()) => {}
                Err(e) if is_docker_not_found(&e) => {}
                Err(e) => {
                    return Err(Error::docker(
                        format!("disconnecting registry {name} from network {network}"),
                        e,
                    ))
                }
            }
        }
        let others = nets
            .iter()
            .any(|n| n != network && n != "bridge" && n != "host" && n != "none");
        if made_by_a_create && !others {
            delete_container_and_volume(docker, &name, guard).await?;
            guard.report(&format!("removed registry {name}"));
        } else if attached {
            guard.report(&format!("disconnected registry {name} (kept)"));
        }
    }
    Ok(())
}

/// Node label (comma-separated registry names) that records which registries
/// a cluster on a shared network (kind's) was created to use.
pub const USED_BY_LABEL: &str = "kecs.registries";

/// On a network clusters share (kind's), registries stay attached when one
/// cluster goes; a registry a cluster create made (this cluster's, or an
/// earlier one's on that network) is deleted with its data once no cluster uses
/// it: no node names it in [`USED_BY_LABEL`] and it is on no other cluster's
/// network. A standalone registry is never deleted.
pub async fn release_from_shared_network(
    docker: &impl Engine,
    network: &str,
    cluster: &str,
    guard: &Guard,
) -> Result<()> {
    let on = |c: &ContainerSummary, net: &str| {
        c.network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .is_some_and(|n| n.contains_key(net))
    };
    // this cluster's own, and those an earlier create on the network made whose
    // last user may have been this cluster
    let made = all(docker).await?.into_iter().filter(|c| {
        summary_label(c, "k3d.cluster")
            .is_some_and(|by| by == cluster || (!by.is_empty() && on(c, network)))
    });
    for c in made {
        let name = summary_name(&c);
        let users = docker::containers_with_labels(docker, &[(USED_BY_LABEL, "")]).await?;
        let named = users.iter().any(|u| {
            summary_label(u, USED_BY_LABEL).is_some_and(|l| l.split(',').any(|n| n == name))
        });
        let on_other_network = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .is_some_and(|n| {
                n.keys()
                    .any(|k| !matches!(k.as_str(), "bridge" | "host" | "none") && k != network)
            });
        if named || on_other_network {
            guard.report(&format!("kept registry {name} (still used)"));
        } else {
            delete_container_and_volume(docker, &name, guard).await?;
            guard.report(&format!("removed registry {name}"));
        }
    }
    Ok(())
}

/// The registry's address on `network` (for CoreDNS's NodeHosts).
pub async fn address_on(docker: &impl Engine, name: &str, network: &str) -> Option<String> {
    let info = docker::inspect(docker, name).await.ok()?;
    info.network_settings?
        .networks?
        .get(network)?
        .ip_address
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// Tells the cluster where its registries are once its API answers: the
/// KEP-1755 ConfigMap `kube-public/local-registry-hosting` for the first, and
/// with `node_hosts` (k3s's CoreDNS reads it) each registry's name and aliases
/// in CoreDNS's `NodeHosts` (when CoreDNS's ConfigMap exists) so pods resolve
/// them too.
pub async fn publish_in_cluster(
    docker: &impl Engine,
    client: &kube::Client,
    network: &str,
    regs: &[RegistryRef],
    node_hosts: bool,
) -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let Some(first) = regs.first() else {
        return Ok(());
    };
    let kerr = |what: &str, e: kube::Error| Error::Kubernetes(format!("{what}: {e}"));
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("local-registry-hosting".into()),
            namespace: Some("kube-public".into()),
            ..Default::default()
        },
        data: Some(std::collections::BTreeMap::from([(
            "localRegistryHosting.v1".to_string(),
            local_registry_hosting(first),
        )])),
        ..Default::default()
    };
    let public: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    match public.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(kerr("creating kube-public/local-registry-hosting", e)),
    }
    if !node_hosts {
        return Ok(());
    }
    let system: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let coredns = match system.get_opt("coredns").await {
        Ok(Some(c)) => c,
        // no CoreDNS (yet): Docker's DNS still resolves the names on the nodes
        Ok(None) => return Ok(()),
        Err(e) => return Err(kerr("reading kube-system/coredns", e)),
    };
    let mut hosts = coredns
        .data
        .as_ref()
        .and_then(|d| d.get("NodeHosts"))
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for r in regs {
        let Some(ip) = address_on(docker, &r.name, network).await else {
            continue;
        };
        let names: Vec<&str> = std::iter::once(r.name.as_str())
            .chain(r.aliases.iter().map(|a| host_of(a)))
            .collect();
        let line = format!("{ip} {}", names.join(" "));
        if !hosts.lines().any(|l| l.trim() == line) {
            if !hosts.is_empty() && !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts.push_str(&line);
            hosts.push('\n');
            changed = true;
        }
    }
    if changed {
        let patch = serde_json::json!({"data": {"NodeHosts": hosts}});
        system
            .patch("coredns", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| kerr("updating kube-system/coredns NodeHosts", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> RegistryRef {
        RegistryRef {
            name: "kecs-registry".into(),
            host_port: 5000,
            aliases: vec!["registry.kecs.local".into()],
        }
    }

    #[test]
    fn registries_yaml_mirrors_every_name() {
        let y = k3s_registries_yaml(&[reg()]);
        for host in [
            "\"localhost:5000\"",
            "\"kecs-registry:5000\"",
            "\"registry.kecs.local:5000\"",
        ] {
            assert!(y.contains(host), "{host} in {y}");
        }
        assert!(y.contains("- http://kecs-registry:5000"));
        assert!(y.ends_with("configs: {}\nauths: {}\n"));
        // k3d's example: a registry on another host port mirrors both ports
        let y = k3s_registries_yaml(&[RegistryRef {
            name: "k3d-myreg".into(),
            host_port: 5111,
            aliases: vec![],
        }]);
        assert!(y.contains("\"k3d-myreg:5111\"") && y.contains("\"k3d-myreg:5000\""));
    }

    #[test]
    fn names_and_options_are_checked() {
        assert!(validate_name("kecs-registry").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let opts = RegistryCreate {
            name: "r".into(),
            host_ip: Some("nope".into()),
            ..Default::default()
        };
        assert!(opts.validate().is_err());
        let hosting = local_registry_hosting(&reg());
        assert!(hosting.contains("host: localhost:5000"));
        assert!(hosting.contains("hostFromClusterNetwork: kecs-registry:5000"));
    }

    #[test]
    fn body_has_k3d_labels_and_loopback_default() {
        let opts = RegistryCreate {
            name: "kecs-registry".into(),
            ..Default::default()
        };
        let b = container_body(&opts, "img", "");
        let l = b.labels.unwrap();
        assert_eq!(l["k3d.role"], "registry");
        assert_eq!(l["k3d.cluster"], "");
        assert_eq!(l["k3s.registry.port.external"], "5000");
        let hc = b.host_config.unwrap();
        let p = hc.port_bindings.unwrap()["5000/tcp"].clone().unwrap();
        assert_eq!(p[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            hc.binds.unwrap(),
            vec!["kecs-registry-data:/var/lib/registry"]
        );
    }
}
