//! What k3d would create for a cluster, as pure data: object names, labels, env,
//! k3s arguments and container bodies (k3d contract §0, §1.6–1.8). No Docker calls.

use crate::engine::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use std::collections::HashMap;

use crate::config::ResolvedConfig;
use crate::options::{CreatePlan, NodeRef, Role};
use crate::provider::{binds, lb_port_bindings, port_bindings, PortMap};

/// Value of the `k3d.version` label on what we create.
pub const K3D_VERSION_LABEL: &str = concat!("kecs-cluster-v", env!("CARGO_PKG_VERSION"));
pub const KUBECONFIG_OUTPUT: &str = "/output/kubeconfig.yaml";
pub const API_PORT: &str = "6443/tcp";
pub const IMAGE_VOLUME_PATH: &str = "/k3d/images";
/// `k3d.role` of the proxies that carry port mappings added to a running
/// cluster (k3d's role for containers that are not nodes).
pub const PORT_PROXY_ROLE: &str = "noRole";

pub fn network_name(cluster: &str) -> String {
    format!("k3d-{cluster}")
}
pub fn image_volume(cluster: &str) -> String {
    format!("k3d-{cluster}-images")
}
pub fn node_name(cluster: &str, node: NodeRef) -> String {
    format!("k3d-{cluster}-{}-{}", node.role.as_str(), node.index)
}
pub fn context_name(cluster: &str) -> String {
    format!("k3d-{cluster}")
}
pub fn user_name(cluster: &str) -> String {
    format!("admin@k3d-{cluster}")
}
pub fn internal_url(cluster: &str) -> String {
    format!("https://k3d-{cluster}-server-0:6443")
}
/// k3d's server load balancer.
pub fn lb_name(cluster: &str) -> String {
    format!("k3d-{cluster}-serverlb")
}
/// The proxy carrying one port mapping added to a running cluster. Its name
/// starts with the load balancer's, so `docker ps --filter name=k3d-<c>-serverlb`
/// (how KECS looks for mapped ports) shows it too.
pub fn port_proxy_name(cluster: &str, host_port: u16, protocol: &str) -> String {
    format!("k3d-{cluster}-serverlb-{host_port}-{protocol}")
}
/// Where k3d's proxy image reads its configuration (k3d writes it before the
/// first start; confd re-renders nginx's configuration when it changes).
pub const LB_CONFIG_PATH: &str = "/etc/confd/values.yaml";
/// k3d's `DefaultLoadbalancerWorkerConnections`.
pub const LB_WORKER_CONNECTIONS: u32 = 1024;
/// Labels of a port proxy: the mapping it carries.
pub const PORT_LABEL_HOST: &str = "kecs.port.host";
pub const PORT_LABEL_HOST_IP: &str = "kecs.port.hostIP";
pub const PORT_LABEL_CONTAINER: &str = "kecs.port.container";
pub const PORT_LABEL_PROTOCOL: &str = "kecs.port.protocol";

/// k3d's `/etc/confd/values.yaml` (sigs.k8s.io/yaml: keys sorted, sequences not
/// indented): each `<containerPort>.<proto>` → the node names it forwards to.
pub fn lb_values_yaml(ports: &std::collections::BTreeMap<String, Vec<String>>) -> String {
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort();
    let mut out = String::from("ports:\n");
    for k in keys {
        out.push_str(&format!("  {k}:\n"));
        for n in &ports[k] {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out.push_str(&format!(
        "settings:\n  workerConnections: {LB_WORKER_CONNECTIONS}\n"
    ));
    out
}

pub const SERVER0: NodeRef = NodeRef {
    role: Role::Server,
    index: 0,
};

/// Everything the per-node specs are derived from.
pub struct ClusterSpec<'a> {
    pub cluster: &'a str,
    /// This create's id (label `kecs.creation`): its rollback removes only
    /// objects carrying it.
    pub creation: &'a str,
    pub token: &'a str,
    pub network_id: &'a str,
    pub network_subnet: &'a str,
    pub network_external: bool,
    pub plan: &'a CreatePlan,
    pub config: &'a ResolvedConfig,
}

impl ClusterSpec<'_> {
    pub fn nodes(&self) -> Vec<NodeRef> {
        let servers = (0..self.plan.servers).map(|index| NodeRef {
            role: Role::Server,
            index,
        });
        let agents = (0..self.plan.agents).map(|index| NodeRef {
            role: Role::Agent,
            index,
        });
        servers.chain(agents).collect()
    }

    fn multi_server(&self) -> bool {
        self.plan.servers > 1
    }

    /// Whether the cluster gets k3d's server load balancer (the default).
    pub fn has_lb(&self) -> bool {
        self.plan.load_balancer.unwrap_or(true)
    }

    /// The labels k3d puts on every node of the cluster, plus the user's.
    pub fn labels(&self, node: NodeRef) -> HashMap<String, String> {
        let mut l = self.global_labels(node.role.as_str());
        let c = self.cluster;
        let lb = if self.has_lb() {
            lb_name(c)
        } else {
            String::new()
        };
        l.insert("k3d.server.loadbalancer".into(), lb);
        if node.role == Role::Server {
            let ip = self.config.api_host_ip.to_string();
            l.insert("k3d.server.api.host".into(), ip.clone());
            l.insert("k3d.server.api.hostIP".into(), ip);
            // empty only when Docker is left to pick the port (never by the manager)
            let port = if self.plan.api_port == 0 {
                String::new()
            } else {
                self.plan.api_port.to_string()
            };
            l.insert("k3d.server.api.port".into(), port);
            if self.multi_server() {
                l.insert("k3d.server.init".into(), (node == SERVER0).to_string());
            }
        }
        l
    }

    /// The labels of every container of the cluster (k3d's runtime and cluster
    /// labels), with `role`, plus the user's.
    pub fn global_labels(&self, role: &str) -> HashMap<String, String> {
        let c = self.cluster;
        let mut l: HashMap<String, String> = self
            .plan
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut set = |k: &str, v: String| {
            l.insert(k.to_string(), v);
        };
        set("app", "k3d".into());
        set("k3d.version", K3D_VERSION_LABEL.into());
        set("k3d.role", role.into());
        set("k3d.cluster", c.into());
        set(crate::provider::CREATION_LABEL, self.creation.into());
        set("k3d.cluster.token", self.token.into());
        set("k3d.cluster.url", internal_url(c));
        set("k3d.cluster.network", network_name(c));
        set("k3d.cluster.network.id", self.network_id.into());
        set("k3d.cluster.network.iprange", self.network_subnet.into());
        set(
            "k3d.cluster.network.external",
            self.network_external.to_string(),
        );
        set("k3d.cluster.imageVolume", image_volume(c));
        l
    }

    /// User env first, then k3d's own variables (k3d's order).
    pub fn env(&self, node: NodeRef) -> Vec<String> {
        let mut env: Vec<String> = self
            .plan
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("K3S_TOKEN={}", self.token));
        let joins = node.role == Role::Agent || (self.multi_server() && node != SERVER0);
        if joins {
            env.push(format!("K3S_URL={}", internal_url(self.cluster)));
        }
        env.push(format!("K3S_KUBECONFIG_OUTPUT={KUBECONFIG_OUTPUT}"));
        env
    }

    pub fn cmd(&self, node: NodeRef) -> Vec<String> {
        let mut cmd = vec![node.role.as_str().to_string()];
        cmd.extend(
            self.plan
                .k3s_args
                .iter()
                .filter(|(_, filter)| filter.matches(node))
                .map(|(arg, _)| arg.clone()),
        );
        if node.role == Role::Server {
            if self.multi_server() && node == SERVER0 {
                cmd.push("--cluster-init".into());
            }
            cmd.push("--tls-san".into());
            cmd.push(self.config.api_host_ip.to_string());
            if self.has_lb() {
                cmd.push("--tls-san".into());
                cmd.push(lb_name(self.cluster));
            }
            if let Some(h) = &self.config.host_address {
                cmd.push("--tls-san".into());
                cmd.push(h.clone());
            }
        }
        cmd
    }

    fn port_bindings(&self, node: NodeRef) -> PortMap {
        let ip = self.config.api_host_ip.to_string();
        // with a load balancer only it publishes the API
        let api = (node == SERVER0 && !self.has_lb()).then_some((ip.as_str(), self.plan.api_port));
        port_bindings(self.plan, node, api, self.has_lb())
    }

    /// What the load balancer forwards at create: the API to every server, and
    /// each of its port mappings to every server and agent (k3d's
    /// `servers:*:proxy`, `agents:*:proxy`).
    pub fn lb_targets(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let names = |role: Role| -> Vec<String> {
            self.nodes()
                .into_iter()
                .filter(|n| n.role == role)
                .map(|n| node_name(self.cluster, n))
                .collect()
        };
        let servers = names(Role::Server);
        let every: Vec<String> = servers.iter().cloned().chain(names(Role::Agent)).collect();
        let mut ports = std::collections::BTreeMap::from([("6443.tcp".to_string(), servers)]);
        for p in self.plan.ports.iter().filter(|p| p.on_lb(true)) {
            let key = format!("{}.{}", p.container_port, p.protocol);
            ports.entry(key).or_insert_with(|| every.clone());
        }
        ports
    }

    /// The load balancer's container body (k3d's `LoadbalancerPrepare`): the
    /// proxy image, the cluster's labels, the API and its port mappings
    /// published, no command of ours.
    pub fn lb_container(&self) -> ContainerCreateBody {
        let ip = self.config.api_host_ip.to_string();
        let ports = lb_port_bindings(self.plan, (ip.as_str(), self.plan.api_port));
        proxy_container(
            self.cluster,
            &self.config.lb_image,
            self.global_labels("loadbalancer"),
            ports,
        )
    }

    fn binds(&self) -> Vec<String> {
        binds(
            format!("{}:{IMAGE_VOLUME_PATH}", image_volume(self.cluster)),
            self.plan,
        )
    }

    /// The container body for one node (k3d's `TranslateNodeToContainer`, with the
    /// cluster network as the network mode).
    pub fn container(&self, node: NodeRef) -> ContainerCreateBody {
        let name = node_name(self.cluster, node);
        let network = network_name(self.cluster);
        let ports = self.port_bindings(node);
        let mut endpoints = HashMap::new();
        endpoints.insert(network.clone(), EndpointSettings::default());
        ContainerCreateBody {
            hostname: Some(name),
            image: Some(self.plan.image.clone()),
            env: Some(self.env(node)),
            cmd: Some(self.cmd(node)),
            labels: Some(self.labels(node)),
            exposed_ports: Some(ports.keys().cloned().collect()),
            host_config: Some(HostConfig {
                init: Some(true),
                privileged: Some(self.config.privileged),
                tmpfs: Some(HashMap::from([
                    ("/run".to_string(), String::new()),
                    ("/var/run".to_string(), String::new()),
                ])),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                binds: Some(self.binds()),
                port_bindings: Some(ports),
                network_mode: Some(network),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            ..Default::default()
        }
    }
}

/// A proxy container on the cluster network publishing `ports` (the load
/// balancer, or a port proxy added later).
pub fn proxy_container(
    cluster: &str,
    image: &str,
    labels: HashMap<String, String>,
    ports: PortMap,
) -> ContainerCreateBody {
    let network = network_name(cluster);
    let mut endpoints = HashMap::new();
    endpoints.insert(network.clone(), EndpointSettings::default());
    ContainerCreateBody {
        image: Some(image.to_string()),
        labels: Some(labels),
        exposed_ports: Some(ports.keys().cloned().collect()),
        host_config: Some(HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            port_bindings: Some(ports),
            network_mode: Some(network),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }),
        ..Default::default()
    }
}

/// The cluster token: 32 random bytes from the OS, hex-encoded.
pub fn new_token() -> crate::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|e| crate::Error::Internal(format!("OS random source: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterManagerConfig;
    use crate::options::CreateOptions;

    fn config() -> ResolvedConfig {
        ClusterManagerConfig {
            privileged: Some(false),
            host_address: Some("kecs.local".into()),
            ..Default::default()
        }
        .resolve(|k| (k == "HOME").then(|| "/h".to_string()))
        .unwrap()
    }

    fn plan(json: &str) -> CreatePlan {
        CreateOptions::from_json(json)
            .unwrap()
            .validate("img:1")
            .unwrap()
    }

    fn spec<'a>(plan: &'a CreatePlan, config: &'a ResolvedConfig) -> ClusterSpec<'a> {
        ClusterSpec {
            cluster: "kecs-a",
            creation: "c1",
            token: "tok",
            network_id: "nid",
            network_subnet: "172.18.0.0/16",
            network_external: false,
            plan,
            config,
        }
    }

    #[test]
    fn names_follow_k3d() {
        assert_eq!(network_name("kecs-a"), "k3d-kecs-a");
        assert_eq!(image_volume("kecs-a"), "k3d-kecs-a-images");
        assert_eq!(
            node_name(
                "kecs-a",
                NodeRef {
                    role: Role::Agent,
                    index: 1
                }
            ),
            "k3d-kecs-a-agent-1"
        );
        assert_eq!(user_name("kecs-a"), "admin@k3d-kecs-a");
        assert_eq!(internal_url("kecs-a"), "https://k3d-kecs-a-server-0:6443");
    }

    #[test]
    fn single_server_labels_env_cmd() {
        let (p, c) = (
            plan(r#"{"labels":{"team":"x"},"env":{"A":"1"},"k3sArgs":["--disable=traefik"]}"#),
            config(),
        );
        let s = spec(&p, &c);
        let l = s.labels(SERVER0);
        for (k, v) in [
            ("app", "k3d"),
            ("k3d.role", "server"),
            ("k3d.cluster", "kecs-a"),
            ("k3d.cluster.token", "tok"),
            ("k3d.cluster.url", "https://k3d-kecs-a-server-0:6443"),
            ("k3d.cluster.network", "k3d-kecs-a"),
            ("k3d.cluster.network.id", "nid"),
            ("k3d.cluster.network.iprange", "172.18.0.0/16"),
            ("k3d.cluster.network.external", "false"),
            ("k3d.cluster.imageVolume", "k3d-kecs-a-images"),
            ("k3d.server.api.host", "127.0.0.1"),
            ("k3d.server.api.hostIP", "127.0.0.1"),
            ("team", "x"),
        ] {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!l.contains_key("k3d.server.init"));
        assert_eq!(
            s.env(SERVER0),
            vec![
                "A=1",
                "K3S_TOKEN=tok",
                "K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml"
            ]
        );
        assert_eq!(
            s.cmd(SERVER0),
            vec![
                "server",
                "--disable=traefik",
                "--tls-san",
                "127.0.0.1",
                "--tls-san",
                "k3d-kecs-a-serverlb",
                "--tls-san",
                "kecs.local"
            ]
        );
        assert_eq!(l["k3d.server.loadbalancer"], "k3d-kecs-a-serverlb");
        let body = s.container(SERVER0);
        let hc = body.host_config.unwrap();
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.init, Some(true));
        // the load balancer publishes the API, the server does not
        assert!(!hc.port_bindings.unwrap().contains_key("6443/tcp"));
        let lb = s.lb_container();
        let lb_labels = lb.labels.unwrap();
        assert_eq!(lb_labels["k3d.role"], "loadbalancer");
        assert!(!lb_labels.contains_key("k3d.server.api.port"));
        let api = lb.host_config.unwrap().port_bindings.unwrap()["6443/tcp"]
            .clone()
            .unwrap();
        assert_eq!(api[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(api[0].host_port.as_deref(), Some(""));
        assert_eq!(
            lb_values_yaml(&s.lb_targets()),
            "ports:\n  6443.tcp:\n  - k3d-kecs-a-server-0\nsettings:\n  workerConnections: 1024\n"
        );
        assert_eq!(hc.binds.unwrap(), vec!["k3d-kecs-a-images:/k3d/images"]);
    }

    #[test]
    fn multi_server_and_agents() {
        let (p, c) = (
            plan(
                r#"{"servers":3,"agents":2,"ports":[{"hostPort":8080,"containerPort":80,"node":"agent:1"}]}"#,
            ),
            config(),
        );
        let s = spec(&p, &c);
        assert_eq!(s.nodes().len(), 5);
        assert!(s.cmd(SERVER0).contains(&"--cluster-init".to_string()));
        assert_eq!(s.labels(SERVER0)["k3d.server.init"], "true");
        let s1 = NodeRef {
            role: Role::Server,
            index: 1,
        };
        assert_eq!(s.labels(s1)["k3d.server.init"], "false");
        assert!(s
            .env(s1)
            .contains(&"K3S_URL=https://k3d-kecs-a-server-0:6443".to_string()));
        assert!(!s.env(SERVER0).iter().any(|e| e.starts_with("K3S_URL")));
        let a1 = NodeRef {
            role: Role::Agent,
            index: 1,
        };
        assert_eq!(s.cmd(a1), vec!["agent"]);
        assert!(!s.labels(a1).contains_key("k3d.server.api.port"));
        // a port filtered to a node stays on that node, not the load balancer
        let ports = s.container(a1).host_config.unwrap().port_bindings.unwrap();
        assert_eq!(
            ports["80/tcp"].clone().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        assert!(!ports.contains_key("6443/tcp"));
    }

    #[test]
    fn token_is_random_hex() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
