//! envoy as kind runs it for its external load balancer: a bootstrap file naming
//! file-based CDS and LDS sources, which kind later replaces (write `*.tmp`, then
//! `mv` over the real name). Only the fields kind's templates produce are read
//! (listeners: socket address + tcp_proxy cluster; clusters: connect_timeout and
//! `load_assignment` endpoints); everything else, health checks included, is
//! ignored. TCP only, as kind's listeners are.
//!
//! Change detection is a content poll of the two files every `POLL` (not
//! inotify): a rename over the watched name replaces the inode, which a poll
//! handles with no watch bookkeeping. Envoy itself applies a replaced file
//! atomically; the poll reads whole files, and kind only ever renames complete ones.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::logfmt::envoy as log;
use crate::proxy::{Listeners, Proto, Route, Upstream};

const POLL: Duration = Duration::from_millis(200);
/// envoy's default cluster connect_timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// envoy's default tcp_proxy idle_timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
pub struct Bootstrap {
    #[serde(default)]
    pub node: Option<Node>,
    #[serde(default)]
    pub dynamic_resources: Option<DynamicResources>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DynamicResources {
    #[serde(default)]
    pub cds_config: Option<ConfigSource>,
    #[serde(default)]
    pub lds_config: Option<ConfigSource>,
}

/// A file config source: the older `path:` or `path_config_source: {path:}`.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigSource {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub path_config_source: Option<PathConfigSource>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PathConfigSource {
    pub path: String,
}

impl ConfigSource {
    fn file(&self) -> Option<&str> {
        self.path_config_source
            .as_ref()
            .map(|p| p.path.as_str())
            .or(self.path.as_deref())
    }
}

/// The body of lds.yaml / cds.yaml. `resources:` may be `[]` or absent.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: Deserialize<'de>")]
pub struct Resources<T> {
    #[serde(default)]
    pub resources: Option<Vec<T>>,
}

#[derive(Debug, Deserialize)]
pub struct Listener {
    #[serde(default)]
    pub name: String,
    pub address: Address,
    #[serde(default)]
    pub filter_chains: Vec<FilterChain>,
}

#[derive(Debug, Deserialize)]
pub struct Address {
    pub socket_address: SocketAddress,
}

#[derive(Debug, Deserialize)]
pub struct SocketAddress {
    pub address: String,
    pub port_value: u16,
}

#[derive(Debug, Deserialize)]
pub struct FilterChain {
    #[serde(default)]
    pub filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub typed_config: Option<TcpProxy>,
}

#[derive(Debug, Deserialize)]
pub struct TcpProxy {
    #[serde(default)]
    pub cluster: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub load_assignment: Option<LoadAssignment>,
}

#[derive(Debug, Deserialize)]
pub struct LoadAssignment {
    #[serde(default)]
    pub endpoints: Vec<LocalityEndpoints>,
}

#[derive(Debug, Deserialize)]
pub struct LocalityEndpoints {
    #[serde(default)]
    pub lb_endpoints: Vec<LbEndpoint>,
}

#[derive(Debug, Deserialize)]
pub struct LbEndpoint {
    pub endpoint: Endpoint,
}

#[derive(Debug, Deserialize)]
pub struct Endpoint {
    pub address: Address,
}

fn parse_resources<T: for<'de> Deserialize<'de>>(text: &str) -> Result<Vec<T>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Resources<T> = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    Ok(parsed.resources.unwrap_or_default())
}

/// A protobuf JSON duration (`"0.25s"`), envoy's format for timeouts.
fn parse_duration(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Listeners joined with their clusters. A listener whose cluster is unknown
/// still opens (envoy's tcp_proxy then closes each connection: no healthy upstream).
pub fn routes(listeners: &[Listener], clusters: &[Cluster]) -> Result<Vec<Route>, String> {
    let by_name: HashMap<&str, &Cluster> = clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut routes = Vec::new();
    for l in listeners {
        let ip: IpAddr = l.address.socket_address.address.parse().map_err(|e| {
            format!(
                "listener '{}': malformed IP address {:?}: {e}",
                l.name, l.address.socket_address.address
            )
        })?;
        let cluster = l
            .filter_chains
            .iter()
            .flat_map(|c| &c.filters)
            .find_map(|f| f.typed_config.as_ref()?.cluster.as_deref())
            .and_then(|name| by_name.get(name));
        let upstreams = cluster
            .and_then(|c| c.load_assignment.as_ref())
            .map(|a| {
                a.endpoints
                    .iter()
                    .flat_map(|e| &e.lb_endpoints)
                    .map(|e| Upstream {
                        host: e.endpoint.address.socket_address.address.clone(),
                        port: e.endpoint.address.socket_address.port_value,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let connect_timeout = cluster
            .and_then(|c| c.connect_timeout.as_deref())
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        routes.push(Route {
            proto: Proto::Tcp,
            bind: SocketAddr::new(ip, l.address.socket_address.port_value),
            upstreams,
            connect_timeout,
            idle_timeout: IDLE_TIMEOUT,
        });
    }
    Ok(routes)
}

fn config_path(args: &[String]) -> Option<&str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-c" || a == "--config-path" {
            return it.next().map(String::as_str);
        }
        if let Some(p) = a.strip_prefix("--config-path=") {
            return Some(p);
        }
    }
    None
}

fn log_error(msg: &str) {
    log(
        "debug",
        "pool",
        "source/common/conn_pool/conn_pool_base.cc:429",
        msg,
    );
}

const SERVER_SRC: &str = "source/server/server.cc:431";

/// `envoy -c <bootstrap>`.
pub async fn run(args: &[String]) -> u8 {
    let mut stop = tokio::spawn(crate::stop_signal());
    let Some(path) = config_path(args) else {
        log(
            "critical",
            "main",
            "source/server/server.cc:131",
            "error initializing configuration '': At least one of --config-path or --config-yaml or Options::configProto() should be non-empty",
        );
        return 1;
    };
    let bootstrap: Bootstrap = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_saphyr::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => {
            log(
                "critical",
                "main",
                "source/server/server.cc:131",
                &format!("error initializing configuration '{path}': {e}"),
            );
            return 1;
        }
    };
    let dynamic = bootstrap.dynamic_resources.unwrap_or_default();
    let cds = dynamic
        .cds_config
        .as_ref()
        .and_then(|c| c.file())
        .map(String::from);
    let lds = dynamic
        .lds_config
        .as_ref()
        .and_then(|c| c.file())
        .map(String::from);
    let node = bootstrap.node.unwrap_or_default();
    log(
        "info",
        "main",
        SERVER_SRC,
        "initializing epoch 0 (base id=0, hot restart version=11.104)",
    );
    log(
        "info",
        "main",
        SERVER_SRC,
        "envoy stand-in: kecs-lb-sim (not envoy)",
    );
    log(
        "info",
        "main",
        SERVER_SRC,
        &format!(
            "node: cluster '{}', id '{}'",
            node.cluster.unwrap_or_default(),
            node.id.unwrap_or_default()
        ),
    );
    log(
        "info",
        "main",
        "source/server/server.cc:1009",
        "starting main dispatch loop",
    );

    let mut listeners = Listeners::new(log_error);
    let read = |p: &Option<String>| p.as_deref().map(std::fs::read_to_string);
    let mut applied: Option<(String, String)> = None;
    let mut first = true;
    loop {
        let now = (read(&cds), read(&lds));
        // A missing file reads as "no resources", as envoy starts with none.
        let texts = (
            now.0.and_then(Result::ok).unwrap_or_default(),
            now.1.and_then(Result::ok).unwrap_or_default(),
        );
        if applied.as_ref() != Some(&texts) {
            update(&mut listeners, &texts.0, &texts.1, first).await;
            first = false;
            applied = Some(texts);
        }
        tokio::select! {
            _ = &mut stop => {
                log("warning", "main", "source/server/server.cc:954", "caught ENVOY_SIGTERM");
                log("info", "main", "source/server/server.cc:1085", "exiting");
                return 0;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn update(listeners: &mut Listeners, cds: &str, lds: &str, first: bool) {
    let clusters = match parse_resources::<Cluster>(cds) {
        Ok(c) => c,
        Err(e) => {
            log(
                "warning",
                "config",
                "source/extensions/config_subscription/filesystem/filesystem_subscription_impl.cc:76",
                &format!("Filesystem config update rejected: {e}"),
            );
            return;
        }
    };
    let lds_listeners = match parse_resources::<Listener>(lds) {
        Ok(l) => l,
        Err(e) => {
            log(
                "warning",
                "config",
                "source/extensions/config_subscription/filesystem/filesystem_subscription_impl.cc:76",
                &format!("Filesystem config update rejected: {e}"),
            );
            return;
        }
    };
    let routes = match routes(&lds_listeners, &clusters) {
        Ok(r) => r,
        Err(e) => {
            log(
                "warning",
                "config",
                "source/common/listener_manager/lds_api.cc:82",
                &format!("lds: update rejected: {e}"),
            );
            return;
        }
    };
    log(
        "info",
        "upstream",
        "source/common/upstream/cds_api_helper.cc:32",
        &format!("cds: add {} cluster(s)", clusters.len()),
    );
    if first {
        log(
            "info",
            "upstream",
            "source/common/upstream/cluster_manager_impl.cc:222",
            "cm init: all clusters initialized",
        );
        log(
            "info",
            "main",
            "source/server/server.cc:990",
            "all clusters initialized. initializing init manager",
        );
    }
    for l in &lds_listeners {
        log(
            "info",
            "upstream",
            "source/common/listener_manager/lds_api.cc:106",
            &format!("lds: add/update listener '{}'", l.name),
        );
    }
    for e in listeners.apply(&routes).await {
        log(
            "critical",
            "config",
            "source/common/listener_manager/listener_impl.cc:105",
            &format!("listener failed: {e}"),
        );
    }
    if first {
        log(
            "info",
            "main",
            "source/server/server.cc:1001",
            "all dependencies initialized. starting workers",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes kind's templates produce (bootstrap, LDS, CDS).
    const BOOTSTRAP: &str = "node:\n  cluster: kind\n  id: kind-external-load-balancer\n\ndynamic_resources:\n  cds_config:\n    resource_api_version: V3\n    path: /home/envoy/cds.yaml\n  lds_config:\n    resource_api_version: V3\n    path_config_source:\n      path: /home/envoy/lds.yaml\n\nadmin:\n  access_log_path: /dev/stdout\n  address:\n    socket_address:\n      address: 0.0.0.0\n      port_value: 10000\n";
    const LDS: &str = "resources:\n- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: listener_apiserver\n  address:\n    socket_address:\n      address: 0.0.0.0\n      port_value: 6443\n      protocol: TCP\n  filter_chains:\n  - filters:\n    - name: envoy.filters.network.tcp_proxy\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n        stat_prefix: ingress_tcp\n        cluster: kube_apiservers\n";
    const CDS: &str = "resources:\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: kube_apiservers\n  connect_timeout: 0.25s\n  type: STRICT_DNS\n  lb_policy: ROUND_ROBIN\n  dns_lookup_family: V4_PREFERRED\n  health_checks:\n  - timeout: 3s\n    interval: 2s\n    unhealthy_threshold: 2\n    healthy_threshold: 1\n    http_health_check:\n      path: /healthz\n  load_assignment:\n    cluster_name: kube_apiservers\n    endpoints:\n    - lb_endpoints:\n      - endpoint:\n          address:\n            socket_address:\n              address: kind-control-plane\n              port_value: 6443\n      - endpoint:\n          address:\n            socket_address:\n              address: kind-control-plane2\n              port_value: 6443\n";

    #[test]
    fn bootstrap_names_both_files() {
        let b: Bootstrap = serde_saphyr::from_str(BOOTSTRAP).unwrap();
        let d = b.dynamic_resources.unwrap();
        assert_eq!(d.cds_config.unwrap().file(), Some("/home/envoy/cds.yaml"));
        assert_eq!(d.lds_config.unwrap().file(), Some("/home/envoy/lds.yaml"));
    }

    #[test]
    fn lds_and_cds_become_one_route() {
        let l = parse_resources::<Listener>(LDS).unwrap();
        let c = parse_resources::<Cluster>(CDS).unwrap();
        let r = routes(&l, &c).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].bind, "0.0.0.0:6443".parse().unwrap());
        assert_eq!(r[0].connect_timeout, Duration::from_millis(250));
        let ups: Vec<String> = r[0].upstreams.iter().map(|u| u.to_string()).collect();
        assert_eq!(ups, ["kind-control-plane:6443", "kind-control-plane2:6443"]);
    }

    #[test]
    fn empty_and_unknown() {
        assert!(parse_resources::<Listener>("resources: []\n")
            .unwrap()
            .is_empty());
        assert!(parse_resources::<Cluster>("").unwrap().is_empty());
        // A listener whose cluster is not (yet) known opens with no upstreams.
        let l = parse_resources::<Listener>(LDS).unwrap();
        let r = routes(&l, &[]).unwrap();
        assert!(r[0].upstreams.is_empty());
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn config_path_forms() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(config_path(&args(&["-c", "/a"])), Some("/a"));
        assert_eq!(
            config_path(&args(&["-l", "debug", "--config-path=/b"])),
            Some("/b")
        );
        assert_eq!(config_path(&args(&[])), None);
    }
}
