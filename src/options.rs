//! Create options (camelCase JSON) and their validation. Everything here is checked
//! before the first Docker call, so bad input creates nothing.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use crate::error::{Error, Result};

pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
pub const MAX_SERVERS: u32 = 9;
pub const MAX_AGENTS: u32 = 99;

/// How to create a cluster (camelCase JSON through the C ABI and Go; every
/// field has a default). Checked before the first Docker call, so bad options
/// create nothing.
///
/// ```
/// use kecs_cluster::{CreateOptions, PortMapping};
///
/// // in Rust: one server (the default), two agents, NodePort 30080 on host port 8080
/// let options = CreateOptions {
///     agents: 2,
///     ports: vec![PortMapping {
///         host_port: 8080,
///         container_port: 30080,
///         protocol: None,
///         host_ip: None,
///         node: None,
///     }],
///     ..Default::default()
/// };
/// assert_eq!(options.servers, 1);
/// assert!(options.wait_ready);
///
/// // the same as the JSON a C or Go caller sends
/// let json = r#"{"agents": 2, "ports": [{"hostPort": 8080, "containerPort": 30080}]}"#;
/// assert_eq!(serde_json::from_str::<CreateOptions>(json).unwrap(), options);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CreateOptions {
    pub servers: u32,
    pub agents: u32,
    pub image: Option<String>,
    /// k3s arguments; for servers unless suffixed with a k3d-style node filter
    /// (`--arg@agent:*`, `@server:0`, `@all`).
    pub k3s_args: Vec<String>,
    /// Environment set on every node.
    pub env: BTreeMap<String, String>,
    /// Extra container labels (`app` and `k3d.*` are reserved).
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortMapping>,
    pub volumes: Vec<VolumeMount>,
    /// Host port for the API; 0: a free one on `apiHostIp`, chosen once and kept.
    pub api_port: u16,
    /// k3d's server load balancer `k3d-<c>-serverlb` in front of the servers
    /// (default true for k3d; kind adds its own only for several control planes).
    pub load_balancer: Option<bool>,
    /// Registries to create with the cluster or use (k3d's `--registry-create`,
    /// `--registry-use`), wired in before the nodes first start.
    pub registry: Option<crate::registry::RegistryOptions>,
    pub wait_ready: bool,
    pub timeout_ms: u64,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            servers: 1,
            agents: 0,
            image: None,
            k3s_args: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            ports: Vec::new(),
            volumes: Vec::new(),
            api_port: 0,
            load_balancer: None,
            registry: None,
            wait_ready: true,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    #[serde(default)]
    pub host_port: u16,
    pub container_port: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub host_ip: Option<String>,
    /// "loadbalancer" (k3d's `@loadbalancer`: forwarded to every server and
    /// agent), "server:0", "agent:1", … Default: the load balancer when the
    /// cluster has one, else server:0.
    #[serde(default)]
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// A host path (absolute) or a named volume.
    #[serde(alias = "hostPath", alias = "volume")]
    pub source: String,
    pub container_path: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

/// A node reference such as "server:0".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeRef {
    pub role: Role,
    pub index: u32,
}

/// Which nodes a k3s argument applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFilter {
    All,
    Role(Role),
    One(NodeRef),
}

impl NodeFilter {
    pub fn matches(self, node: NodeRef) -> bool {
        match self {
            NodeFilter::All => true,
            NodeFilter::Role(r) => r == node.role,
            NodeFilter::One(n) => n == node,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidPort {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<String>,
    /// The node publishing it, when not the load balancer.
    pub node: NodeRef,
    /// Some(true): "loadbalancer" asked; Some(false): a node asked; None: no
    /// filter (the provider decides).
    pub on_load_balancer: Option<bool>,
}

impl ValidPort {
    /// Whether the load balancer publishes it in a cluster with (or without) one.
    pub fn on_lb(&self, cluster_has_lb: bool) -> bool {
        self.on_load_balancer.unwrap_or(cluster_has_lb)
    }
}

/// Options after validation, with defaults applied.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub servers: u32,
    pub agents: u32,
    pub image: String,
    pub k3s_args: Vec<(String, NodeFilter)>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<ValidPort>,
    pub volumes: Vec<VolumeMount>,
    pub api_port: u16,
    /// None: the provider's default.
    pub load_balancer: Option<bool>,
    pub registry: crate::registry::RegistryOptions,
    pub wait_ready: bool,
    pub timeout: std::time::Duration,
    /// The id this create labels its objects with (`kecs.creation`); empty
    /// until the manager (or the provider) makes one for an attempt.
    pub creation_id: String,
}

impl CreateOptions {
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::InvalidArgument(format!("create options JSON: {e}")))
    }

    pub fn validate(&self, default_image: &str) -> Result<CreatePlan> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if self.servers == 0 || self.servers > MAX_SERVERS {
            return bad(format!(
                "servers must be between 1 and {MAX_SERVERS}, got {}",
                self.servers
            ));
        }
        if self.agents > MAX_AGENTS {
            return bad(format!(
                "agents must be at most {MAX_AGENTS}, got {}",
                self.agents
            ));
        }
        let image = match &self.image {
            Some(i) if !i.is_empty() => i.clone(),
            _ => default_image.to_string(),
        };
        crate::config::validate_image(&image)?;
        if self.timeout_ms == 0 {
            return bad("timeoutMs must be greater than 0".into());
        }
        let mut k3s_args = Vec::new();
        for arg in &self.k3s_args {
            k3s_args.push(parse_k3s_arg(arg, self.servers, self.agents)?);
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!(
                    "env name {k:?} is not valid: it must be non-empty and contain no '=' or NUL"
                ));
            }
        }
        for k in self.labels.keys() {
            if k.is_empty()
                || k == "app"
                || k.starts_with("k3d.")
                || k.starts_with("k3s.")
                || k.starts_with("io.x-k8s.kind.")
            {
                return bad(format!(
                    "label {k:?} is reserved or empty: 'app', 'k3d.*', 'k3s.*' and 'io.x-k8s.kind.*' belong to the cluster manager"
                ));
            }
        }
        let mut ports = Vec::new();
        let mut seen = HashSet::new();
        for p in &self.ports {
            let v = validate_port(p, self.servers, self.agents)?;
            if v.host_port != 0
                && !seen.insert((v.host_port, v.protocol.clone(), v.host_ip.clone()))
            {
                return bad(format!(
                    "host port {}/{} is mapped twice",
                    v.host_port, v.protocol
                ));
            }
            ports.push(v);
        }
        if self.load_balancer == Some(false)
            && ports.iter().any(|p| p.on_load_balancer == Some(true))
        {
            return bad("a port targets the load balancer, but loadBalancer is false".into());
        }
        if self.api_port != 0
            && ports
                .iter()
                .any(|p| p.host_port == self.api_port && p.protocol == "tcp")
        {
            return bad(format!(
                "apiPort {} is also used by a port mapping",
                self.api_port
            ));
        }
        for v in &self.volumes {
            if !v.container_path.starts_with('/') {
                return bad(format!(
                    "volume containerPath {:?} must be an absolute path",
                    v.container_path
                ));
            }
            if v.source.is_empty() || (v.source.contains('/') && !v.source.starts_with('/')) {
                return bad(format!(
                    "volume source {:?} must be an absolute host path or a volume name",
                    v.source
                ));
            }
            if v.source.contains(':') || v.container_path.contains(':') {
                return bad(format!(
                    "volume {:?}:{:?} must not contain ':'",
                    v.source, v.container_path
                ));
            }
        }
        let registry = self.registry.clone().unwrap_or_default();
        if let Some(c) = &registry.create {
            c.validate()?;
        }
        for name in &registry.use_existing {
            crate::registry::validate_name(name)?;
        }
        Ok(CreatePlan {
            servers: self.servers,
            agents: self.agents,
            image,
            k3s_args,
            env: self.env.clone(),
            labels: self.labels.clone(),
            ports,
            volumes: self.volumes.clone(),
            api_port: self.api_port,
            load_balancer: self.load_balancer,
            registry,
            wait_ready: self.wait_ready,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            creation_id: String::new(),
        })
    }
}

pub fn parse_node_ref(s: &str, servers: u32, agents: u32) -> Result<NodeRef> {
    let err = || {
        Error::InvalidArgument(format!(
            "node {s:?} does not name a node of this cluster: use \"server:<0..{}>\" or \"agent:<0..{}>\"",
            servers.saturating_sub(1),
            agents.saturating_sub(1)
        ))
    };
    let (role, idx) = s.split_once(':').ok_or_else(err)?;
    let role = match role {
        "server" | "servers" => Role::Server,
        "agent" | "agents" => Role::Agent,
        _ => return Err(err()),
    };
    let index: u32 = idx.parse().map_err(|_| err())?;
    let count = if role == Role::Server {
        servers
    } else {
        agents
    };
    if index >= count {
        return Err(err());
    }
    Ok(NodeRef { role, index })
}

fn parse_k3s_arg(arg: &str, servers: u32, agents: u32) -> Result<(String, NodeFilter)> {
    if arg.is_empty() || arg.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "k3s argument {arg:?} is empty or contains NUL"
        )));
    }
    let Some((value, filter)) = arg.rsplit_once('@') else {
        return Ok((arg.to_string(), NodeFilter::Role(Role::Server)));
    };
    let filter = match filter {
        "all" => NodeFilter::All,
        "server" | "servers" | "server:*" | "servers:*" => NodeFilter::Role(Role::Server),
        "agent" | "agents" | "agent:*" | "agents:*" => NodeFilter::Role(Role::Agent),
        f if f.starts_with("server") || f.starts_with("agent") => {
            NodeFilter::One(parse_node_ref(f, servers, agents)?)
        }
        // an '@' that is part of the value, not a filter
        _ => return Ok((arg.to_string(), NodeFilter::Role(Role::Server))),
    };
    Ok((value.to_string(), filter))
}

/// A mapping added to a running cluster's load balancer: a protocol of tcp or
/// udp, and no node other than the load balancer.
pub fn validate_runtime_port(p: &PortMapping) -> Result<ValidPort> {
    if p.node
        .as_deref()
        .is_some_and(|n| n != "loadbalancer" && n != "lb")
    {
        return Err(Error::InvalidArgument(format!(
            "port mappings added to a running cluster go to its load balancer, not to node {:?}",
            p.node.as_deref().unwrap_or_default()
        )));
    }
    let v = validate_port(p, 1, 0)?;
    if v.protocol == "sctp" {
        return Err(Error::InvalidArgument(
            "the load balancer forwards tcp and udp, not sctp".into(),
        ));
    }
    Ok(ValidPort {
        on_load_balancer: Some(true),
        ..v
    })
}

/// `HOSTPORT:CONTAINERPORT[/PROTO][@NODE]` as k3d and docker write it
/// (`8080:30080/udp`, `8080:80@loadbalancer`).
pub fn parse_port_spec(spec: &str) -> Result<PortMapping> {
    let (ports, node) = match spec.split_once('@') {
        Some((p, n)) => (p, Some(n.to_string())),
        None => (spec, None),
    };
    let (ports, protocol) = match ports.split_once('/') {
        Some((p, proto)) => (p, Some(proto.to_string())),
        None => (ports, None),
    };
    let err = || {
        Error::InvalidArgument(format!(
            "port mapping {spec:?} is not HOSTPORT:CONTAINERPORT[/tcp|/udp][@NODE]"
        ))
    };
    let (host, container) = ports.split_once(':').ok_or_else(err)?;
    Ok(PortMapping {
        host_port: host.parse().map_err(|_| err())?,
        container_port: container.parse().map_err(|_| err())?,
        protocol,
        host_ip: None,
        node,
    })
}

fn validate_port(p: &PortMapping, servers: u32, agents: u32) -> Result<ValidPort> {
    if p.container_port == 0 {
        return Err(Error::InvalidArgument(
            "port mapping needs a containerPort between 1 and 65535".into(),
        ));
    }
    let protocol = p
        .protocol
        .clone()
        .unwrap_or_else(|| "tcp".into())
        .to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "port protocol {protocol:?} must be tcp, udp or sctp"
        )));
    }
    if let Some(ip) = &p.host_ip {
        if ip.parse::<IpAddr>().is_err() {
            return Err(Error::InvalidArgument(format!(
                "port hostIp {ip:?} is not an IP address"
            )));
        }
    }
    let server0 = NodeRef {
        role: Role::Server,
        index: 0,
    };
    let (node, on_load_balancer) = match p.node.as_deref() {
        Some("loadbalancer" | "lb") => (server0, Some(true)),
        Some(n) => (parse_node_ref(n, servers, agents)?, Some(false)),
        None => (server0, None),
    };
    Ok(ValidPort {
        host_port: p.host_port,
        container_port: p.container_port,
        protocol,
        host_ip: p.host_ip.clone(),
        node,
        on_load_balancer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(json: &str) -> Result<CreatePlan> {
        CreateOptions::from_json(json)?.validate("img:1")
    }

    #[test]
    fn defaults() {
        let p = opts("{}").unwrap();
        assert_eq!((p.servers, p.agents), (1, 0));
        assert_eq!(p.image, "img:1");
        assert!(p.wait_ready);
        assert_eq!(p.timeout.as_millis(), 120_000);
    }

    #[test]
    fn full_options_parse() {
        let p = opts(r#"{"servers":3,"agents":2,"image":"x:y","k3sArgs":["--disable=traefik","--node-taint=a@agent:1"],
            "env":{"A":"1"},"labels":{"team":"x"},"ports":[{"hostPort":8080,"containerPort":80,"node":"agent:1"}],
            "volumes":[{"source":"/data","containerPath":"/data","readOnly":true}],"apiPort":6550,"waitReady":false,"timeoutMs":5000}"#)
        .unwrap();
        assert_eq!(
            p.k3s_args[0],
            ("--disable=traefik".into(), NodeFilter::Role(Role::Server))
        );
        assert_eq!(
            p.k3s_args[1],
            (
                "--node-taint=a".into(),
                NodeFilter::One(NodeRef {
                    role: Role::Agent,
                    index: 1
                })
            )
        );
        assert_eq!(
            p.ports[0].node,
            NodeRef {
                role: Role::Agent,
                index: 1
            }
        );
        assert_eq!(p.ports[0].protocol, "tcp");
    }

    #[test]
    fn port_specs() {
        let p = parse_port_spec("8080:30080/udp").unwrap();
        assert_eq!((p.host_port, p.container_port), (8080, 30080));
        assert_eq!(p.protocol.as_deref(), Some("udp"));
        let v = validate_runtime_port(&p).unwrap();
        assert_eq!(v.on_load_balancer, Some(true));
        for bad in ["8080", "x:80", "80:y", "99999:80", "80:0"] {
            let r = parse_port_spec(bad).and_then(|p| validate_runtime_port(&p));
            assert_eq!(
                r.unwrap_err().code(),
                crate::ErrorCode::InvalidArgument,
                "{bad}"
            );
        }
        let sctp = parse_port_spec("80:80/sctp").unwrap();
        assert!(validate_runtime_port(&sctp).is_err());
        let on_node = parse_port_spec("80:80@server:0").unwrap();
        assert!(validate_runtime_port(&on_node).is_err());
        let lb = opts(r#"{"ports":[{"hostPort":80,"containerPort":80,"node":"loadbalancer"}]}"#)
            .unwrap();
        assert_eq!(lb.ports[0].on_load_balancer, Some(true));
        assert!(opts(r#"{"loadBalancer":false,"ports":[{"hostPort":80,"containerPort":80,"node":"loadbalancer"}]}"#).is_err());
    }

    #[test]
    fn rejects_bad_options() {
        let bad = [
            r#"{"servers":0}"#,
            r#"{"agents":1000}"#,
            r#"{"labels":{"app":"x"}}"#,
            r#"{"labels":{"k3d.role":"x"}}"#,
            r#"{"env":{"A=B":"x"}}"#,
            r#"{"ports":[{"containerPort":0}]}"#,
            r#"{"ports":[{"containerPort":80,"node":"agent:0"}]}"#,
            r#"{"ports":[{"containerPort":80,"protocol":"icmp"}]}"#,
            r#"{"ports":[{"hostPort":80,"containerPort":80},{"hostPort":80,"containerPort":81}]}"#,
            r#"{"volumes":[{"source":"rel/path","containerPath":"/x"}]}"#,
            r#"{"volumes":[{"source":"/x","containerPath":"x"}]}"#,
            r#"{"timeoutMs":0}"#,
            r#"{"k3sArgs":["--x@server:5"]}"#,
            r#"{"bogus":true}"#,
            r#"{"apiPort":8080,"ports":[{"hostPort":8080,"containerPort":80}]}"#,
        ];
        for json in bad {
            let e = opts(json).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{json}");
        }
    }
}
