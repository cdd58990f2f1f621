//! What kind would create for a cluster, as pure data (kind contract §0, §1c–1d,
//! §2): node names, labels, container bodies and the kubeadm config. No Docker calls.

use crate::engine::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use std::collections::HashMap;

use crate::config::ResolvedConfig;
use crate::options::{CreatePlan, NodeRef, Role};
use crate::provider::{binding, binds, port_bindings, PortMap};

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

/// Role label value of kind's external load balancer.
pub const LB_ROLE: &str = "external-load-balancer";
/// Where kind's envoy bootstrap points its file-based CDS and LDS.
const ENVOY_DIR: &str = "/home/envoy";

/// `<c>-external-load-balancer`: also its hostname.
pub fn lb_name(cluster: &str) -> String {
    format!("{cluster}-{LB_ROLE}")
}

/// kind puts its external load balancer in front of the API only when there is
/// more than one control plane (`ClusterHasImplicitLoadBalancer`).
pub fn has_lb(servers: u32) -> bool {
    servers > 1
}

/// The API's endpoint on the cluster network: the load balancer when there is
/// one, else the sole control plane (kind's `GetAPIServerInternalEndpoint`).
pub fn control_plane_endpoint(cluster: &str, has_lb: bool) -> String {
    if has_lb {
        format!("{}:6443", lb_name(cluster))
    } else {
        format!("{cluster}-control-plane:6443")
    }
}

pub fn internal_url(cluster: &str, has_lb: bool) -> String {
    format!("https://{}", control_plane_endpoint(cluster, has_lb))
}

/// Files kind copies from the bootstrap control plane to every other control
/// plane before it joins (the cluster CAs and the service-account key pair).
pub const SHARED_CONTROL_PLANE_FILES: [&str; 9] = [
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/pki/ca.key",
    "/etc/kubernetes/pki/front-proxy-ca.crt",
    "/etc/kubernetes/pki/front-proxy-ca.key",
    "/etc/kubernetes/pki/sa.pub",
    "/etc/kubernetes/pki/sa.key",
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/etcd/ca.key",
];

/// The load balancer's shell bootstrap (kind contract §1e): envoy's bootstrap
/// file naming file-based CDS and LDS, empty resources only where none exist yet
/// (a restarted load balancer keeps the backends it was given), then envoy,
/// restarted until it exits cleanly.
pub fn lb_bootstrap(cluster: &str) -> String {
    let envoy_yaml = format!(
        "node:\\n  cluster: {cluster}\\n  id: {id}\\n\\ndynamic_resources:\\n  cds_config:\\n    resource_api_version: V3\\n    path: {ENVOY_DIR}/cds.yaml\\n  lds_config:\\n    resource_api_version: V3\\n    path: {ENVOY_DIR}/lds.yaml\\n\\nadmin:\\n  access_log_path: /dev/stdout\\n  address:\\n    socket_address:\\n      address: 0.0.0.0\\n      port_value: 10000\\n",
        id = lb_name(cluster)
    );
    format!(
        "mkdir -p {ENVOY_DIR} && echo -en '{envoy_yaml}' > {ENVOY_DIR}/envoy.yaml && \
         {{ [ -f {ENVOY_DIR}/cds.yaml ] || echo 'resources: []' > {ENVOY_DIR}/cds.yaml; }} && \
         {{ [ -f {ENVOY_DIR}/lds.yaml ] || echo 'resources: []' > {ENVOY_DIR}/lds.yaml; }} && \
         while true; do envoy -c {ENVOY_DIR}/envoy.yaml && break; sleep 1; done"
    )
}

/// kind's local-registry recipe for containerd's configuration (`$1`), then
/// `$2` (the restart) only when the file changed. Arguments after those are
/// `host=endpoint` pairs.
/// - A config that already lists `registry.mirrors` tables (older node images)
///   cannot also take `config_path` (containerd refuses its CRI plugin then):
///   a mirror table per pulled-by name is added instead, as kind's older recipe
///   did.
/// - Otherwise `config_path = "/etc/containerd/certs.d"` goes into the CRI
///   registry table (containerd 2's images plugin for a version 3 file): an
///   existing `config_path` there is replaced, a missing one added at the end
///   of the table, a missing table appended. Headers may be indented, single-
///   or double-quoted, or followed by a comment.
///
/// A file that comes out unchanged (already set) is left alone, with no restart.
pub const CONTAINERD_REGISTRY_PATCH: &str = r#"f="$1"; restart="$2"; shift 2
[ -f "$f" ] || exit 0
if grep -Eq '^[[:space:]]*version[[:space:]]*=[[:space:]]*3' "$f"; then
  p='io.containerd.cri.v1.images'
else
  p='io.containerd.grpc.v1.cri'
fi
awk -v p="$p" -v pairs="$*" '
function norm(s) { sub(/#.*/, "", s); gsub(/[ \t]/, "", s); gsub(/\047/, "\"", s); return s }
BEGIN {
  table = "[plugins.\"" p "\".registry]"
  mirrors = "[plugins.\"" p "\".registry.mirrors."
  line = "  config_path = \"/etc/containerd/certs.d\""
}
{ lines[NR] = $0; n = NR }
/^[ \t]*\[/ { h = norm($0); if (index(h, mirrors) == 1) has_mirrors = 1; headers[h] = 1 }
END {
  if (has_mirrors) {
    for (i = 1; i <= n; i++) print lines[i]
    k = split(pairs, kv, " ")
    for (j = 1; j <= k; j++) {
      eq = index(kv[j], "="); host = substr(kv[j], 1, eq - 1); ep = substr(kv[j], eq + 1)
      h = mirrors "\"" host "\"]"
      if (!(h in headers)) printf "\n%s\n  endpoint = [\"%s\"]\n", h, ep
    }
    exit
  }
  intab = 0; done = 0
  for (i = 1; i <= n; i++) {
    l = lines[i]
    if (l ~ /^[ \t]*\[/) {
      if (intab && !done) { print line; done = 1 }
      intab = (norm(l) == table)
      if (intab) found = 1
    } else if (intab && l ~ /^[ \t]*config_path[ \t]*=/) {
      if (!done) print line
      done = 1
      continue
    }
    print l
  }
  if (intab && !done) { print line; done = 1 }
  if (!found) printf "\n%s\n%s\n", table, line
}' "$f" > "$f.kecs-tmp" || exit 1
if cmp -s "$f" "$f.kecs-tmp"; then rm -f "$f.kecs-tmp"; exit 0; fi
mv "$f.kecs-tmp" "$f" && eval "$restart""#;

/// Where containerd's configuration lives in a kind node, and how it is
/// restarted when running (kind's recipe restarts it after a config change).
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CONTAINERD_RESTART: &str =
    "! command -v systemctl >/dev/null || ! systemctl is-active -q containerd || systemctl restart containerd";

/// Envoy's listener: TCP :6443 proxied to the control planes' cluster.
pub fn lb_lds() -> String {
    "resources:
- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener
  name: listener_apiserver
  address:
    socket_address:
      address: 0.0.0.0
      port_value: 6443
      protocol: TCP
  filter_chains:
  - filters:
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: ingress_tcp
        cluster: kube_apiservers
"
    .to_string()
}

/// Envoy's cluster: every control plane's API, resolved by name on the kind
/// network and health-checked on `/healthz` over TLS.
pub fn lb_cds(control_planes: &[String]) -> String {
    let mut cds = String::from(
        "resources:
- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: kube_apiservers
  connect_timeout: 0.25s
  type: STRICT_DNS
  lb_policy: ROUND_ROBIN
  dns_lookup_family: V4_PREFERRED
  health_checks:
  - timeout: 3s
    interval: 2s
    unhealthy_threshold: 2
    healthy_threshold: 1
    http_health_check:
      path: /healthz
    transport_socket_match_criteria:
      tls: \"true\"
  transport_socket_matches:
  - name: tls
    match:
      tls: \"true\"
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
  load_assignment:
    cluster_name: kube_apiservers
    endpoints:
    - lb_endpoints:
",
    );
    for cp in control_planes {
        cds.push_str(&format!(
            "      - endpoint:
          address:
            socket_address:
              address: {cp}
              port_value: 6443
"
        ));
    }
    cds
}

/// Where kind writes the two resource files (as `*.tmp`, then renamed over).
pub fn lb_config_paths() -> [(String, String); 2] {
    [
        (
            format!("{ENVOY_DIR}/lds.yaml.tmp"),
            format!("{ENVOY_DIR}/lds.yaml"),
        ),
        (
            format!("{ENVOY_DIR}/cds.yaml.tmp"),
            format!("{ENVOY_DIR}/cds.yaml"),
        ),
    ]
}

/// Every container of a kind cluster is attached to the shared network.
fn on_kind_network() -> NetworkingConfig {
    NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            NETWORK.to_string(),
            EndpointSettings::default(),
        )])),
    }
}

pub struct ClusterSpec<'a> {
    pub cluster: &'a str,
    /// This create's id (label `kecs.creation`): its rollback removes only
    /// objects carrying it.
    pub creation: &'a str,
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

    /// The user's labels, then kind's cluster and role labels.
    fn labels_for(&self, role: &str) -> HashMap<String, String> {
        let mut l: HashMap<String, String> = self
            .plan
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.insert(CLUSTER_LABEL.into(), self.cluster.into());
        l.insert(ROLE_LABEL.into(), role.into());
        l.insert(crate::provider::CREATION_LABEL.into(), self.creation.into());
        l
    }

    pub fn labels(&self, node: NodeRef) -> HashMap<String, String> {
        let mut l = self.labels_for(role_name(node.role));
        // the kind network is shared: which registries this cluster uses is
        // recorded on its nodes, so deleting another cluster keeps them
        let registries: Vec<&str> = self
            .plan
            .registry
            .create
            .iter()
            .map(|c| c.name.as_str())
            .chain(self.plan.registry.use_existing.iter().map(String::as_str))
            .collect();
        if !registries.is_empty() {
            l.insert(crate::registry::USED_BY_LABEL.into(), registries.join(","));
        }
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
    /// Behind the load balancer a control plane's own API port is loopback-only
    /// and picked by Docker; the load balancer publishes the cluster's.
    fn port_bindings(&self, node: NodeRef) -> PortMap {
        let ip = self.config.api_host_ip.to_string();
        let api = if node.role != Role::Server {
            None
        } else if self.has_lb() {
            Some((
                if self.config.api_host_ip.is_ipv6() {
                    "::1"
                } else {
                    "127.0.0.1"
                },
                0,
            ))
        } else {
            Some((ip.as_str(), self.plan.api_port))
        };
        port_bindings(self.plan, node, api, false)
    }

    pub fn has_lb(&self) -> bool {
        has_lb(self.plan.servers)
    }

    /// kind's `docker run` for the external load balancer (§1e): envoy behind a
    /// shell bootstrap, the cluster's API port published, nothing privileged.
    pub fn load_balancer(&self) -> ContainerCreateBody {
        let name = lb_name(self.cluster);
        let labels = self.labels_for(LB_ROLE);
        let ip = self.config.api_host_ip.to_string();
        let ports: PortMap = HashMap::from([(
            API_PORT.to_string(),
            Some(vec![binding(&ip, self.plan.api_port)]),
        )]);
        ContainerCreateBody {
            hostname: Some(name),
            image: Some(self.config.lb_image.clone()),
            tty: Some(true),
            labels: Some(labels),
            cmd: Some(vec!["bash".into(), "-c".into(), lb_bootstrap(self.cluster)]),
            exposed_ports: Some(vec![API_PORT.to_string()]),
            host_config: Some(HostConfig {
                network_mode: Some(NETWORK.into()),
                init: Some(false),
                port_bindings: Some(ports),
                ..Default::default()
            }),
            networking_config: Some(on_kind_network()),
            ..Default::default()
        }
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
            networking_config: Some(on_kind_network()),
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
    api_sans: &[String],
    lb: bool,
    secondary_control_plane: bool,
) -> String {
    let endpoint = control_plane_endpoint(cluster, lb);
    let extra_sans: String = api_sans.iter().map(|s| format!("  - \"{s}\"\n")).collect();
    let extra_sans = extra_sans.trim_end_matches('\n');
    // a control plane that joins serves the API too: kubeadm's join then runs
    // the control-plane phases on it
    let join_control_plane = if secondary_control_plane {
        format!(
            "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"{node_ip}\"\n    bindPort: 6443\n"
        )
    } else {
        String::new()
    };
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
{extra_sans}
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
{join_control_plane}nodeRegistration:
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
        assert_eq!(
            internal_url("kecs-a", false),
            "https://kecs-a-control-plane:6443"
        );
        assert_eq!(
            internal_url("kecs-a", true),
            "https://kecs-a-external-load-balancer:6443"
        );
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
            creation: "c1",
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
    fn ha_layout_puts_the_api_on_the_load_balancer() {
        let config = ClusterManagerConfig {
            provider: Some("kind".into()),
            ..Default::default()
        }
        .resolve(|k| (k == "HOME").then(|| "/h".to_string()))
        .unwrap();
        let mut plan = CreateOptions {
            servers: 3,
            agents: 1,
            ..Default::default()
        }
        .validate("img")
        .unwrap();
        plan.api_port = 41000;
        let s = ClusterSpec {
            cluster: "kecs-a",
            creation: "c1",
            plan: &plan,
            config: &config,
        };
        assert!(s.has_lb());
        let lb = s.load_balancer();
        assert_eq!(
            lb.hostname.as_deref(),
            Some("kecs-a-external-load-balancer")
        );
        assert_eq!(
            lb.image.as_deref(),
            Some(crate::config::DEFAULT_KIND_LB_IMAGE)
        );
        assert_eq!(lb.labels.as_ref().unwrap()[ROLE_LABEL], LB_ROLE);
        assert_eq!(lb.labels.as_ref().unwrap()[CLUSTER_LABEL], "kecs-a");
        let cmd = lb.cmd.unwrap();
        assert_eq!(&cmd[..2], ["bash", "-c"]);
        assert!(cmd[2]
            .contains("echo -en 'node:\\n  cluster: kecs-a\\n  id: kecs-a-external-load-balancer"));
        assert!(cmd[2].contains("[ -f /home/envoy/cds.yaml ] || echo 'resources: []'"));
        let hc = lb.host_config.unwrap();
        assert_eq!(hc.privileged, None);
        let api = hc.port_bindings.unwrap()[API_PORT].clone().unwrap();
        assert_eq!(api[0].host_port.as_deref(), Some("41000"));
        // a control plane's own API port: loopback, Docker's pick
        let cp = s.container(NodeRef {
            role: Role::Server,
            index: 1,
        });
        let cp_api = cp.host_config.unwrap().port_bindings.unwrap()[API_PORT]
            .clone()
            .unwrap();
        assert_eq!(cp_api[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(cp_api[0].host_port.as_deref(), Some(""));
        let cds = lb_cds(&[
            "kecs-a-control-plane".into(),
            "kecs-a-control-plane2".into(),
        ]);
        assert_eq!(cds.matches("port_value: 6443").count(), 2);
        assert!(cds.contains("address: kecs-a-control-plane2"));
        assert!(lb_lds().contains("cluster: kube_apiservers"));
        let secondary = kubeadm_config(
            "kecs-a",
            "kecs-a-control-plane2",
            "172.18.0.3",
            "v1.31.4",
            &["127.0.0.1".to_string(), "docker.example".to_string()],
            true,
            true,
        );
        assert!(secondary.contains("controlPlaneEndpoint: \"kecs-a-external-load-balancer:6443\""));
        assert!(secondary.contains(
            "kind: JoinConfiguration\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"172.18.0.3\"\n    bindPort: 6443\nnodeRegistration:"
        ));
        assert!(secondary.contains("apiServerEndpoint: \"kecs-a-external-load-balancer:6443\""));
        assert!(
            secondary.contains("  - \"localhost\"\n  - \"127.0.0.1\"\n  - \"docker.example\"\n")
        );
    }

    /// The containerd patch, run with the local `sh` on copies of the config
    /// shapes it meets (restart replaced by `echo restarted`).
    #[test]
    fn containerd_patch_shapes() {
        let dir = std::env::temp_dir().join(format!("kecs-ctrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let patch = |before: &str| -> (String, bool) {
            let f = dir.join("config.toml");
            std::fs::write(&f, before).unwrap();
            let out = std::process::Command::new("sh")
                .args(["-c", CONTAINERD_REGISTRY_PATCH, "sh"])
                .arg(&f)
                .args([
                    "echo restarted",
                    "localhost:5000=http://reg:5000",
                    "reg:5000=http://reg:5000",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let restarted = String::from_utf8_lossy(&out.stdout).contains("restarted");
            (std::fs::read_to_string(&f).unwrap(), restarted)
        };
        let line = "  config_path = \"/etc/containerd/certs.d\"\n";
        // no registry table: appended; a second run changes nothing, no restart
        let (once, restarted) =
            patch("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  x = 1\n");
        assert!(restarted);
        assert!(
            once.ends_with(&format!(
                "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n{line}"
            )),
            "{once}"
        );
        assert_eq!(patch(&once), (once.clone(), false));
        // an indented header with a comment, and an empty config_path: replaced in place
        let (t, _) = patch("version = 2\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]  # reg\n    config_path = \"\"\n  [other]\n");
        assert_eq!(t, format!("version = 2\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]  # reg\n{line}  [other]\n"));
        // the table exists without the key: added at its end, before the next table
        let (t, _) = patch(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  x = 1\n[other]\n",
        );
        assert_eq!(t, format!("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  x = 1\n{line}[other]\n"));
        // containerd 2, single-quoted header
        let (t, _) = patch(
            "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n  config_path = ''\n",
        );
        assert_eq!(
            t,
            format!("version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\n{line}")
        );
        // mirrors already configured: mirror tables instead of config_path
        let mirrors = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"k8s.gcr.io\"]\n  endpoint = [\"https://registry.k8s.io\"]\n";
        let (t, restarted) = patch(mirrors);
        assert!(restarted && !t.contains("config_path"), "{t}");
        assert!(t.contains("[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"localhost:5000\"]\n  endpoint = [\"http://reg:5000\"]\n"), "{t}");
        assert!(t.contains("mirrors.\"reg:5000\"]"));
        assert_eq!(patch(&t), (t.clone(), false));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kubeadm_config_has_kinds_values() {
        let c = kubeadm_config(
            "kecs-a",
            "kecs-a-control-plane",
            "172.18.0.2",
            "v1.31.4",
            &["127.0.0.1".to_string()],
            false,
            false,
        );
        assert!(c.contains("controlPlaneEndpoint: \"kecs-a-control-plane:6443\""));
        assert!(!c.contains("controlPlane:"));
        assert!(c.contains("token: \"abcdef.0123456789abcdef\""));
        assert!(c.contains("provider-id: \"kind://docker/kecs-a/kecs-a-control-plane\""));
        assert_eq!(c.matches("\n---\n").count(), 4);
    }
}
