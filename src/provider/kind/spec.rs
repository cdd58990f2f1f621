//! What kind would create for a cluster, as pure data (kind contract §0, §1c–1d,
//! §2): node names, labels, container bodies and the kubeadm config. No Docker calls.

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use std::collections::HashMap;

use crate::config::ResolvedConfig;
use crate::options::{CreatePlan, NodeRef, Role};
use crate::provider::{binds, port_bindings, PortMap};

pub const NETWORK: &str = "kind";
pub const CLUSTER_LABEL: &str = "io.x-k8s.kind.cluster";
pub const ROLE_LABEL: &str = "io.x-k8s.kind.role";
pub const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
pub const KUBEADM_CONF: &str = "/kind/kubeadm.conf";
pub const BOOTSTRAP_TOKEN: &str = "abcdef.0123456789abcdef";
pub const POD_SUBNET: &str = "10.244.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/16";
pub const API_PORT: &str = "6443/tcp";
/// kind's IPv6 ULA subnets for the network named `kind` (attempts 0–4).
pub const ULA_SUBNETS: [&str; 5] = [
    "fc00:f853:ccd:e793::/64",
    "fc00:8866:27d0:bd7e::/64",
    "fc00:ddd9:fcae:c61c::/64",
    "fc00:aa7c:42e1:abd3::/64",
    "fc00:3131:6ea8:d73a::/64",
];
/// The node log line that means systemd finished booting.
pub const BOOT_LINES: [&str; 2] = ["Multi-User System", "detected cgroup v1"];

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Server => "control-plane",
        Role::Agent => "worker",
    }
}

/// `<c>-control-plane`, `<c>-worker`, `<c>-worker2`, …
pub fn node_name(cluster: &str, node: NodeRef) -> String {
    let suffix = if node.index == 0 {
        String::new()
    } else {
        (node.index + 1).to_string()
    };
    format!("{cluster}-{}{suffix}", role_name(node.role))
}

pub fn entry_name(cluster: &str) -> String {
    format!("kind-{cluster}")
}

pub fn control_plane_endpoint(cluster: &str) -> String {
    format!("{cluster}-control-plane:6443")
}

pub fn internal_url(cluster: &str) -> String {
    format!("https://{}", control_plane_endpoint(cluster))
}

pub struct ClusterSpec<'a> {
    pub cluster: &'a str,
    pub plan: &'a CreatePlan,
    pub config: &'a ResolvedConfig,
}

impl ClusterSpec<'_> {
    pub fn nodes(&self) -> Vec<NodeRef> {
        let cps = (0..self.plan.servers).map(|index| NodeRef {
            role: Role::Server,
            index,
        });
        let workers = (0..self.plan.agents).map(|index| NodeRef {
            role: Role::Agent,
            index,
        });
        cps.chain(workers).collect()
    }

    pub fn labels(&self, node: NodeRef) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = self
            .plan
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.insert(CLUSTER_LABEL.into(), self.cluster.into());
        l.insert(ROLE_LABEL.into(), role_name(node.role).into());
        l
    }

    fn env(&self, node: NodeRef) -> Vec<String> {
        let mut env: Vec<String> = self
            .plan
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if node.role == Role::Server {
            env.push(format!("KUBECONFIG={ADMIN_CONF}"));
        }
        env
    }

    /// The user's mappings, then the API port on control-planes (kind's order).
    fn port_bindings(&self, node: NodeRef) -> PortMap {
        let ip = self.config.api_host_ip.to_string();
        let api = (node.role == Role::Server).then_some((ip.as_str(), self.plan.api_port));
        port_bindings(self.plan, node, api, false)
    }

    fn binds(&self) -> Vec<String> {
        binds("/lib/modules:/lib/modules:ro".to_string(), self.plan)
    }

    /// kind's `docker run` for a node, as an Engine API body (restart policy set by
    /// the caller).
    pub fn container(&self, node: NodeRef) -> ContainerCreateBody {
        let name = node_name(self.cluster, node);
        let ports = self.port_bindings(node);
        let privileged = self.config.privileged;
        ContainerCreateBody {
            hostname: Some(name),
            image: Some(self.plan.image.clone()),
            tty: Some(true),
            env: Some(self.env(node)),
            labels: Some(self.labels(node)),
            volumes: Some(vec!["/var".to_string()]),
            exposed_ports: Some(ports.keys().cloned().collect()),
            host_config: Some(HostConfig {
                privileged: Some(privileged),
                security_opt: privileged.then(|| {
                    vec![
                        "seccomp=unconfined".to_string(),
                        "apparmor=unconfined".to_string(),
                    ]
                }),
                tmpfs: Some(HashMap::from([
                    ("/tmp".to_string(), String::new()),
                    ("/run".to_string(), String::new()),
                ])),
                binds: Some(self.binds()),
                network_mode: Some(NETWORK.into()),
                init: Some(false),
                port_bindings: Some(ports),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    NETWORK.to_string(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        }
    }
}

/// `/kind/kubeadm.conf` for one node (kubeadm v1beta3, Kubernetes 1.23–1.35).
pub fn kubeadm_config(
    cluster: &str,
    node: &str,
    node_ip: &str,
    version: &str,
    api_host_ip: &str,
) -> String {
    let endpoint = control_plane_endpoint(cluster);
    format!(
        r#"apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
clusterName: "{cluster}"
controlPlaneEndpoint: "{endpoint}"
kubernetesVersion: {version}
networking:
  podSubnet: "{POD_SUBNET}"
  serviceSubnet: "{SERVICE_SUBNET}"
apiServer:
  certSANs:
  - "localhost"
  - "{api_host_ip}"
controllerManager:
  extraArgs:
    enable-hostpath-provisioner: "true"
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
- token: "{BOOTSTRAP_TOKEN}"
localAPIEndpoint:
  advertiseAddress: "{node_ip}"
  bindPort: 6443
nodeRegistration:
  criSocket: "unix:///run/containerd/containerd.sock"
  kubeletExtraArgs:
    node-ip: "{node_ip}"
    provider-id: "kind://docker/{cluster}/{node}"
skipPhases:
- preflight
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
nodeRegistration:
  criSocket: "unix:///run/containerd/containerd.sock"
  kubeletExtraArgs:
    node-ip: "{node_ip}"
    provider-id: "kind://docker/{cluster}/{node}"
discovery:
  bootstrapToken:
    apiServerEndpoint: "{endpoint}"
    token: "{BOOTSTRAP_TOKEN}"
    unsafeSkipCAVerification: true
skipPhases:
- preflight
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
cgroupRoot: /kubelet
failSwapOn: false
imageGCHighThresholdPercent: 100
evictionHard:
  imagefs.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: "iptables"
iptables:
  minSyncPeriod: 1s
conntrack:
  maxPerCore: 0
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterManagerConfig;
    use crate::options::CreateOptions;

    #[test]
    fn names_follow_kind() {
        let n = |role, index| node_name("kecs-a", NodeRef { role, index });
        assert_eq!(n(Role::Server, 0), "kecs-a-control-plane");
        assert_eq!(n(Role::Agent, 0), "kecs-a-worker");
        assert_eq!(n(Role::Agent, 1), "kecs-a-worker2");
        assert_eq!(entry_name("kecs-a"), "kind-kecs-a");
        assert_eq!(internal_url("kecs-a"), "https://kecs-a-control-plane:6443");
    }

    #[test]
    fn node_container_shape() {
        let config = ClusterManagerConfig::default()
            .resolve(|k| (k == "HOME").then(|| "/h".to_string()))
            .unwrap();
        let plan = CreateOptions {
            agents: 1,
            ..Default::default()
        }
        .validate("img")
        .unwrap();
        let s = ClusterSpec {
            cluster: "kecs-a",
            plan: &plan,
            config: &config,
        };
        let cp = s.container(NodeRef {
            role: Role::Server,
            index: 0,
        });
        assert_eq!(cp.tty, Some(true));
        assert_eq!(cp.labels.as_ref().unwrap()[CLUSTER_LABEL], "kecs-a");
        assert_eq!(cp.labels.as_ref().unwrap()[ROLE_LABEL], "control-plane");
        assert!(cp
            .env
            .as_ref()
            .unwrap()
            .contains(&"KUBECONFIG=/etc/kubernetes/admin.conf".to_string()));
        let hc = cp.host_config.unwrap();
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(
            hc.security_opt.unwrap(),
            vec!["seccomp=unconfined", "apparmor=unconfined"]
        );
        assert!(
            hc.tmpfs.as_ref().unwrap().contains_key("/tmp")
                && hc.tmpfs.unwrap().contains_key("/run")
        );
        assert_eq!(hc.binds.unwrap()[0], "/lib/modules:/lib/modules:ro");
        assert_eq!(
            hc.port_bindings.unwrap()[API_PORT].clone().unwrap()[0]
                .host_ip
                .as_deref(),
            Some("127.0.0.1")
        );
        let w = s.container(NodeRef {
            role: Role::Agent,
            index: 0,
        });
        assert!(!w.env.unwrap().iter().any(|e| e.starts_with("KUBECONFIG")));
        assert!(!w
            .host_config
            .unwrap()
            .port_bindings
            .unwrap()
            .contains_key(API_PORT));
    }

    #[test]
    fn kubeadm_config_has_kinds_values() {
        let c = kubeadm_config(
            "kecs-a",
            "kecs-a-control-plane",
            "172.18.0.2",
            "v1.31.4",
            "127.0.0.1",
        );
        assert!(c.contains("controlPlaneEndpoint: \"kecs-a-control-plane:6443\""));
        assert!(c.contains("token: \"abcdef.0123456789abcdef\""));
        assert!(c.contains("provider-id: \"kind://docker/kecs-a/kecs-a-control-plane\""));
        assert_eq!(c.matches("\n---\n").count(), 4);
    }
}
