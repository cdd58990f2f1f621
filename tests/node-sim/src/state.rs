//! The simulated cluster state held by a server: registered nodes and the objects
//! created through the API (namespaces, config maps, services), with uids,
//! creation timestamps, generations and monotonic resourceVersions as a real API
//! server hands them out. With a data directory the state is written to
//! `<dir>/state.json` after every change and read back at boot, so a container that
//! is stopped and started again keeps its cluster (k3s keeps its datastore under
//! `/var/lib/rancher/k3s/server/db`). The servers of a cluster hold one replica
//! each (`cluster.rs`): `snapshot` and `install` move the whole state between
//! them, the newest (highest resourceVersion) winning, and the state records the
//! member servers in the order they joined.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::logfmt::rfc3339_now;

pub const K3S_VERSION: &str = "v1.31.4+k3s1";

static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The Kubernetes version this node reports: k3s's, or the kind node image's
/// (`/kind/version`) in kind-node mode.
pub fn version() -> &'static str {
    VERSION.get().map(String::as_str).unwrap_or(K3S_VERSION)
}

pub fn set_version(v: &str) {
    let _ = VERSION.set(v.to_string());
}

/// A node stops being Ready when it has not been heard from for this long: the
/// node lifecycle controller's default `node-monitor-grace-period` (40 s), or
/// `SIM_NODE_GRACE_MS` on the server (tests shorten it).
pub fn node_grace() -> Duration {
    crate::env("SIM_NODE_GRACE_MS")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(40))
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub control_plane: bool,
    pub ip: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub uid: String,
    /// a server's own API address (`https://<hostname>:<port>`): servers are the
    /// members of the replicated datastore; agents leave it empty
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_url: String,
}

/// A server holding a replica of the state, in the order the servers joined:
/// the first one reachable leads (takes the writes).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub name: String,
    pub url: String,
}

/// A resource kind the API serves.
pub struct Kind {
    pub resource: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const RW: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

pub const KINDS: &[Kind] = &[
    Kind {
        resource: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        verbs: RW,
    },
    Kind {
        resource: "namespaces",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        verbs: RW,
    },
    Kind {
        resource: "nodes",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        verbs: &["get", "list", "watch"],
    },
    Kind {
        resource: "services",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        verbs: RW,
    },
];

pub fn kind_of(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.resource == resource)
}

/// Failures with the reason and code a real API server gives for them.
#[derive(Debug)]
pub enum ApiError {
    NotFound {
        resource: String,
        name: String,
    },
    AlreadyExists {
        resource: String,
        name: String,
    },
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    Invalid {
        kind: String,
        name: String,
        message: String,
    },
    BadRequest(String),
    MethodNotAllowed(String),
    Forbidden {
        resource: String,
        name: String,
        message: String,
    },
}

/// `(resource, namespace, name)`; namespace is empty for cluster-scoped objects.
type Key = (String, String, String);

pub struct State {
    inner: Mutex<Inner>,
    pub token: String,
    data_dir: Option<PathBuf>,
    ca_pem: String,
    /// (generation, node ports of every NodePort/LoadBalancer service): nodes follow it
    ports: tokio::sync::watch::Sender<(u64, Vec<u16>)>,
    /// when each node was last heard from (registration or port poll)
    seen: Mutex<HashMap<String, Instant>>,
    /// the first two octets of the service network (a /16): k3s's 10.43, or
    /// the `serviceSubnet` of kind's kubeadm configuration (10.96 by default)
    service_net: (u8, u8),
}

/// `10.96.0.0/16` → (10, 96); anything else (IPv6, unparsable) → k3s's 10.43.
pub fn service_net(cidr: Option<&str>) -> (u8, u8) {
    cidr.and_then(|c| c.split('/').next())
        .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| (ip.octets()[0], ip.octets()[1]))
        .unwrap_or((10, 43))
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Inner {
    resource_version: u64,
    nodes: BTreeMap<String, (NodeRecord, u64)>,
    #[serde(with = "objects_as_list")]
    objects: BTreeMap<Key, Value>,
    #[serde(default)]
    members: Vec<Member>,
}

/// JSON has no tuple keys: objects are stored as a list and keyed again on load.
mod objects_as_list {
    use super::Key;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(m: &BTreeMap<Key, Value>, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<(&str, &Value)> = m.iter().map(|(k, v)| (k.0.as_str(), v)).collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Key, Value>, D::Error> {
        let list: Vec<(String, Value)> = Vec::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|(resource, v)| {
                let ns = v["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
                ((resource, ns, name), v)
            })
            .collect())
    }
}

pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

const COREFILE: &str = ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    hosts /etc/coredns/NodeHosts {\n      ttl 60\n      reload 15s\n      fallthrough\n    }\n    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n";

/// Selectors of a list request: `metadata.name`/`metadata.namespace` field
/// selectors (what `kubectl delete --wait` lists by) and equality label selectors.
#[derive(Default)]
pub struct Selectors {
    pub fields: Vec<(String, String, bool)>,
    pub labels: Vec<(String, Option<String>, bool)>,
}

impl Selectors {
    pub fn parse(field: &str, label: &str) -> Result<Self, ApiError> {
        let mut s = Selectors::default();
        for term in field.split(',').filter(|t| !t.is_empty()) {
            let (k, v, eq) = split_term(term)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid field selector {term:?}")))?;
            let Some(v) = v else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector {term:?}"
                )));
            };
            if !matches!(k.as_str(), "metadata.name" | "metadata.namespace") {
                return Err(ApiError::BadRequest(format!(
                    "field label not supported: {k}"
                )));
            }
            s.fields.push((k, v, eq));
        }
        for term in label.split(',').filter(|t| !t.is_empty()) {
            let t = term.trim();
            if let Some(k) = t.strip_prefix('!') {
                s.labels.push((k.to_string(), None, false));
            } else {
                let (k, v, eq) = split_term(t).ok_or_else(|| {
                    ApiError::BadRequest(format!("unable to parse requirement {t:?}"))
                })?;
                s.labels.push((k, v, eq));
            }
        }
        Ok(s)
    }

    fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        self.fields.iter().all(|(k, v, eq)| {
            let actual = match k.as_str() {
                "metadata.name" => meta["name"].as_str().unwrap_or(""),
                _ => meta["namespace"].as_str().unwrap_or(""),
            };
            (actual == v) == *eq
        }) && self.labels.iter().all(|(k, v, eq)| {
            let actual = meta["labels"][k.as_str()].as_str();
            match v {
                None => actual.is_some() == *eq,
                Some(v) => (actual == Some(v.as_str())) == *eq,
            }
        })
    }
}

/// `k=v`, `k==v`, `k!=v` or a bare `k` (exists).
fn split_term(t: &str) -> Option<(String, Option<String>, bool)> {
    if let Some((k, v)) = t.split_once("!=") {
        return Some((k.trim().into(), Some(v.trim().into()), false));
    }
    if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
        return Some((k.trim().into(), Some(v.trim().into()), true));
    }
    (!t.is_empty() && !t.contains(' ')).then(|| (t.trim().into(), None, true))
}

impl State {
    /// The state kept in `data_dir` if a previous run left one there (the bool is
    /// true: a restart), else a new cluster's: default namespaces, the
    /// `kubernetes` and `kube-dns` services, CoreDNS's config map. (The
    /// servers call `open_with`, which also opens a joining server's state.)
    #[cfg(test)]
    pub fn open(
        token: String,
        ca_pem: String,
        data_dir: Option<PathBuf>,
        service_net: (u8, u8),
    ) -> (Self, bool) {
        Self::open_with(token, ca_pem, data_dir, service_net, true)
    }

    /// As `open`; with `seed` false a new state starts empty (resourceVersion 0):
    /// a server joining a cluster takes the cluster's state instead.
    pub fn open_with(
        token: String,
        ca_pem: String,
        data_dir: Option<PathBuf>,
        service_net: (u8, u8),
        seed: bool,
    ) -> (Self, bool) {
        let saved: Option<Inner> = data_dir
            .as_ref()
            .and_then(|d| std::fs::read(d.join("state.json")).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let restarted = saved.is_some();
        // generations start from the boot time, so a node that followed the ports
        // before a server restart never mistakes the new run's numbers for its own
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let (ports, _) = tokio::sync::watch::channel((epoch, Vec::new()));
        let state = State {
            inner: Mutex::new(saved.unwrap_or_default()),
            token,
            data_dir,
            ca_pem,
            ports,
            seen: Mutex::new(HashMap::new()),
            service_net,
        };
        if restarted {
            state.purge_orphans();
        } else if seed {
            state.seed();
        }
        state.publish_ports(&state.inner.lock().unwrap());
        // nodes known from before the restart count as seen now: the grace period
        // starts again, as the node controller's does after an API server restart
        {
            let inner = state.inner.lock().unwrap();
            let mut seen = state.seen.lock().unwrap();
            for name in inner.nodes.keys() {
                seen.insert(name.clone(), Instant::now());
            }
        }
        (state, restarted)
    }

    fn seed(&self) {
        let (a, b) = self.service_net;
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            self.create("namespaces", "", &json!({"metadata": {"name": ns}}))
                .expect("seed namespace");
        }
        let seeds = [
            (
                "services",
                "default",
                json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                       "spec": {"clusterIP": format!("{a}.{b}.0.1"), "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
            ),
            (
                "services",
                "kube-system",
                json!({"metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                                    "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
                       "spec": {"clusterIP": format!("{a}.{b}.0.10"), "selector": {"k8s-app": "kube-dns"}, "ports": [
                           {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}}),
            ),
            (
                "configmaps",
                "kube-system",
                json!({"metadata": {"name": "coredns", "labels": {"objectset.rio.cattle.io/hash": "sim"}},
                       "data": {"Corefile": COREFILE, "NodeHosts": ""}}),
            ),
        ];
        for (resource, ns, body) in seeds {
            self.create(resource, ns, &body).expect("seed object");
        }
    }

    /// Writes the state to `<data_dir>/state.json` (atomically: a stop mid-write
    /// leaves the previous file).
    fn save(&self, inner: &Inner) {
        let Some(dir) = &self.data_dir else { return };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join("state.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(inner)?)?;
            std::fs::rename(&tmp, dir.join("state.json"))
        };
        if let Err(e) = write() {
            crate::logfmt::error(&format!("saving state to {}: {e}", dir.display()));
        }
    }

    pub fn register(&self, mut node: NodeRecord) {
        let mut inner = self.inner.lock().unwrap();
        let rv = inner.next_rv();
        if let Some((existing, _)) = inner.nodes.get(&node.name) {
            node.uid = existing.uid.clone();
            node.created = existing.created.clone();
        } else {
            node.uid = new_uid();
            node.created = rfc3339_now();
        }
        // NodeHosts lists every node, as k3s's CoreDNS config does
        let line = format!("{} {}", node.ip, node.name);
        let key: Key = ("configmaps".into(), "kube-system".into(), "coredns".into());
        let cm_rv = inner.next_rv();
        if let Some(cm) = inner.objects.get_mut(&key) {
            let hosts = cm["data"]["NodeHosts"].as_str().unwrap_or("").to_string();
            // a node that comes back with a new address replaces its old line
            let mut lines: Vec<&str> = hosts
                .lines()
                .filter(|l| l.split_whitespace().nth(1) != Some(node.name.as_str()))
                .collect();
            lines.push(&line);
            let joined: String = lines.iter().map(|l| format!("{l}\n")).collect();
            if joined != hosts {
                cm["data"]["NodeHosts"] = json!(joined);
                cm["metadata"]["resourceVersion"] = json!(cm_rv.to_string());
            }
        }
        self.seen
            .lock()
            .unwrap()
            .insert(node.name.clone(), Instant::now());
        if !node.peer_url.is_empty() {
            let member = Member {
                name: node.name.clone(),
                url: node.peer_url.clone(),
            };
            // a member keeps its place in the order; a new one goes last
            match inner.members.iter_mut().find(|m| m.name == member.name) {
                Some(m) => *m = member,
                None => inner.members.push(member),
            }
        }
        inner.nodes.insert(node.name.clone(), (node, rv));
        self.save(&inner);
    }

    /// The servers holding a replica, in leadership order.
    pub fn members(&self) -> Vec<Member> {
        self.inner.lock().unwrap().members.clone()
    }

    /// The members recorded in `<data_dir>/state.json` by a previous run.
    pub fn saved_members(data_dir: &std::path::Path) -> Vec<Member> {
        std::fs::read(data_dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Inner>(&b).ok())
            .map(|i| i.members)
            .unwrap_or_default()
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.inner.lock().unwrap().resource_version
    }

    /// The whole replicated state (objects, nodes, members) as JSON.
    pub fn snapshot(&self) -> Value {
        serde_json::to_value(&*self.inner.lock().unwrap()).expect("state serialises")
    }

    /// Takes a replica's state when it is newer (a higher resourceVersion) than
    /// this one; true when it was taken.
    pub fn install(&self, snapshot: &Value) -> bool {
        let Ok(theirs) = serde_json::from_value::<Inner>(snapshot.clone()) else {
            return false;
        };
        let mut inner = self.inner.lock().unwrap();
        if theirs.resource_version <= inner.resource_version {
            return false;
        }
        *inner = theirs;
        // nodes new to this server start their grace period now
        {
            let mut seen = self.seen.lock().unwrap();
            for name in inner.nodes.keys() {
                seen.entry(name.clone()).or_insert_with(Instant::now);
            }
        }
        self.publish_ports(&inner);
        self.save(&inner);
        true
    }

    /// How long ago (ms) each node was last heard from, for the other servers.
    pub fn seen_ages(&self) -> BTreeMap<String, u64> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), t.elapsed().as_millis() as u64))
            .collect()
    }

    /// Takes what another server heard: a node is as fresh as the freshest report.
    pub fn merge_seen(&self, ages: &BTreeMap<String, u64>) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap();
        for (name, age) in ages {
            let Some(at) = now.checked_sub(Duration::from_millis(*age)) else {
                continue;
            };
            let entry = seen.entry(name.clone()).or_insert(at);
            if *entry < at {
                *entry = at;
            }
        }
    }

    /// Records that `node` is alive (agents poll the server for node ports).
    pub fn heard_from(&self, node: &str) {
        self.seen
            .lock()
            .unwrap()
            .insert(node.to_string(), Instant::now());
    }

    fn node_ready(&self, name: &str, local: Option<&str>) -> bool {
        if Some(name) == local {
            return true;
        }
        self.seen
            .lock()
            .unwrap()
            .get(name)
            .is_some_and(|t| t.elapsed() < node_grace())
    }

    /// Lists `resource` in `namespace` (None: all namespaces) as a `<Kind>List`.
    pub fn list(
        &self,
        resource: &str,
        namespace: Option<&str>,
        sel: &Selectors,
        local_node: Option<&str>,
    ) -> Value {
        let kind = kind_of(resource).expect("known resource");
        let inner = self.inner.lock().unwrap();
        let items: Vec<Value> = if resource == "nodes" {
            inner
                .nodes
                .values()
                .map(|(n, rv)| node_object(n, *rv, self.node_ready(&n.name, local_node)))
                .filter(|o| sel.matches(o))
                .collect()
        } else {
            inner
                .objects
                .iter()
                .filter(|((r, ns, _), _)| {
                    r == resource && namespace.is_none_or(|want| want == ns.as_str())
                })
                .map(|(_, v)| v.clone())
                .filter(|o| sel.matches(o))
                .collect()
        };
        json!({"kind": format!("{}List", kind.kind), "apiVersion": "v1",
               "metadata": {"resourceVersion": inner.resource_version.to_string()}, "items": items})
    }

    pub fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        local_node: Option<&str>,
    ) -> Result<Value, ApiError> {
        let inner = self.inner.lock().unwrap();
        let found = if resource == "nodes" {
            inner
                .nodes
                .get(name)
                .map(|(n, rv)| node_object(n, *rv, self.node_ready(&n.name, local_node)))
        } else {
            inner
                .objects
                .get(&(resource.into(), namespace.into(), name.into()))
                .cloned()
        };
        found.ok_or_else(|| ApiError::NotFound {
            resource: resource.into(),
            name: name.into(),
        })
    }

    /// Creates an object from a request body, filling metadata and defaults.
    pub fn create(&self, resource: &str, namespace: &str, body: &Value) -> Result<Value, ApiError> {
        let kind = kind_of(resource).expect("known resource");
        if resource == "nodes" {
            return Err(ApiError::MethodNotAllowed(
                "nodes register themselves".into(),
            ));
        }
        let mut obj = body.clone();
        if !obj.is_object() {
            return Err(ApiError::BadRequest("the body must be an object".into()));
        }
        check_type(&obj, kind)?;
        let meta = &obj["metadata"];
        if let Some(ns) = meta["namespace"].as_str() {
            if kind.namespaced && !ns.is_empty() && ns != namespace {
                return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
            }
        }
        let mut name = meta["name"].as_str().unwrap_or("").to_string();
        if name.is_empty() {
            if let Some(prefix) = meta["generateName"].as_str().filter(|p| !p.is_empty()) {
                name = format!("{prefix}{}", &new_uid()[..5]);
            }
        }
        if name.is_empty() {
            return Err(invalid(
                kind,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        if !is_dns_subdomain(&name) || (resource != "configmaps" && !is_dns_label(&name)) {
            return Err(invalid(kind, &name, &format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")));
        }
        let mut inner = self.inner.lock().unwrap();
        if kind.namespaced
            && !inner
                .objects
                .contains_key(&("namespaces".into(), String::new(), namespace.into()))
        {
            return Err(ApiError::NotFound {
                resource: "namespaces".into(),
                name: namespace.into(),
            });
        }
        let ns = if kind.namespaced { namespace } else { "" };
        let key: Key = (resource.into(), ns.into(), name.clone());
        if inner.objects.contains_key(&key) {
            return Err(ApiError::AlreadyExists {
                resource: resource.into(),
                name,
            });
        }
        let rv = inner.next_rv();
        obj["kind"] = json!(kind.kind);
        obj["apiVersion"] = json!("v1");
        let m = obj["metadata"].as_object_mut().map(std::mem::take);
        let mut m = m.unwrap_or_default();
        m.insert("name".into(), json!(name));
        if kind.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(new_uid()));
        m.insert("resourceVersion".into(), json!(rv.to_string()));
        m.insert("generation".into(), json!(1));
        m.insert("creationTimestamp".into(), json!(rfc3339_now()));
        for k in ["deletionTimestamp", "selfLink", "managedFields"] {
            m.remove(k);
        }
        obj["metadata"] = Value::Object(m);
        match resource {
            "namespaces" => default_namespace(&mut obj, &name),
            "services" => default_service(&mut obj, &inner, None, self.service_net)
                .map_err(|e| invalid(kind, &name, &e))?,
            "configmaps" => check_configmap(&obj).map_err(|e| invalid(kind, &name, &e))?,
            _ => {}
        }
        inner.objects.insert(key, obj.clone());
        if resource == "namespaces" {
            // every namespace gets the cluster CA, as kube-controller-manager publishes it
            let rv = inner.next_rv();
            let cm = json!({"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": "kube-root-ca.crt", "namespace": name, "uid": new_uid(),
                             "resourceVersion": rv.to_string(), "creationTimestamp": rfc3339_now(),
                             "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": self.ca_pem}});
            inner.objects.insert(
                ("configmaps".into(), name.clone(), "kube-root-ca.crt".into()),
                cm,
            );
        }
        self.publish_ports(&inner);
        self.save(&inner);
        Ok(obj)
    }

    /// Replaces an object (PUT, or the result of a PATCH): the server keeps uid,
    /// creationTimestamp and allocated addresses; a stale resourceVersion is a 409.
    pub fn replace(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let kind = kind_of(resource).expect("known resource");
        if resource == "nodes" {
            return Err(ApiError::MethodNotAllowed(
                "nodes are managed by their kubelet".into(),
            ));
        }
        check_type(body, kind)?;
        let ns = if kind.namespaced { namespace } else { "" };
        let key: Key = (resource.into(), ns.into(), name.into());
        let mut inner = self.inner.lock().unwrap();
        let Some(old) = inner.objects.get(&key).cloned() else {
            return Err(ApiError::NotFound {
                resource: resource.into(),
                name: name.into(),
            });
        };
        if let Some(body_name) = body["metadata"]["name"].as_str() {
            if body_name != name {
                return Err(ApiError::BadRequest(
                    "the name of the object does not match the name on the URL".into(),
                ));
            }
        }
        if let Some(want) = body["metadata"]["resourceVersion"]
            .as_str()
            .filter(|v| !v.is_empty())
        {
            if Some(want) != old["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::Conflict {
                    resource: resource.into(),
                    name: name.into(),
                    message: format!("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
                });
            }
        }
        let mut obj = body.clone();
        obj["kind"] = json!(kind.kind);
        obj["apiVersion"] = json!("v1");
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            match old["metadata"].get(k) {
                Some(v) => obj["metadata"][k] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if old["immutable"] == json!(true)
            && (old.get("data") != obj.get("data")
                || old.get("binaryData") != obj.get("binaryData"))
        {
            return Err(invalid(
                kind,
                name,
                "data: Forbidden: field is immutable when `immutable` is set",
            ));
        }
        match resource {
            "namespaces" => default_namespace(&mut obj, name),
            "services" => default_service(&mut obj, &inner, Some(&old), self.service_net)
                .map_err(|e| invalid(kind, name, &e))?,
            "configmaps" => check_configmap(&obj).map_err(|e| invalid(kind, name, &e))?,
            _ => {}
        }
        // status is the server's: a PUT of the main resource does not change it
        if let Some(status) = old.get("status") {
            obj["status"] = status.clone();
        }
        let mut cmp_old = old.clone();
        cmp_old["metadata"]["resourceVersion"] = Value::Null;
        let mut cmp_new = obj.clone();
        cmp_new["metadata"]["resourceVersion"] = Value::Null;
        if cmp_old == cmp_new {
            // a no-op update keeps the resourceVersion, as the API server's does
            return Ok(old);
        }
        let rv = inner.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let spec_changed = old.get("spec") != obj.get("spec") || old.get("data") != obj.get("data");
        if spec_changed {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        inner.objects.insert(key, obj.clone());
        self.publish_ports(&inner);
        self.save(&inner);
        Ok(obj)
    }

    /// Deletes an object; a namespace takes everything in it along.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let kind = kind_of(resource).expect("known resource");
        let ns = if kind.namespaced { namespace } else { "" };
        let mut inner = self.inner.lock().unwrap();
        if resource == "nodes" {
            let Some((node, rv)) = inner.nodes.remove(name) else {
                return Err(ApiError::NotFound {
                    resource: resource.into(),
                    name: name.into(),
                });
            };
            self.save(&inner);
            return Ok(node_object(&node, rv, false));
        }
        if resource == "namespaces" && ["default", "kube-system", "kube-public"].contains(&name) {
            return Err(ApiError::Forbidden {
                resource: resource.into(),
                name: name.into(),
                message: format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                ),
            });
        }
        let Some(mut obj) = inner
            .objects
            .remove(&(resource.into(), ns.into(), name.into()))
        else {
            return Err(ApiError::NotFound {
                resource: resource.into(),
                name: name.into(),
            });
        };
        let rv = inner.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        if resource == "namespaces" {
            // the namespace goes now; what is in it goes a moment later
            // (`purge_namespace`), as the namespace controller empties it, so a
            // `kubectl delete -f` that lists the namespace first still deletes
            // its objects
            obj["metadata"]["deletionTimestamp"] = json!(rfc3339_now());
            obj["status"]["phase"] = json!("Terminating");
        }
        self.publish_ports(&inner);
        self.save(&inner);
        Ok(obj)
    }

    /// Removes the objects of a deleted namespace that are not newer than its
    /// deletion (`deleted_rv`, the resourceVersion its DELETE answered with).
    pub fn purge_namespace(&self, namespace: &str, deleted_rv: u64) {
        let mut inner = self.inner.lock().unwrap();
        let before = inner.objects.len();
        inner.objects.retain(|(_, ns, _), o| {
            ns != namespace
                || o["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|rv| rv > deleted_rv)
        });
        if inner.objects.len() != before {
            self.publish_ports(&inner);
            self.save(&inner);
        }
    }

    /// Objects left from namespaces deleted just before a stop.
    fn purge_orphans(&self) {
        let mut inner = self.inner.lock().unwrap();
        let namespaces: BTreeSet<String> = inner
            .objects
            .keys()
            .filter(|(r, _, _)| r == "namespaces")
            .map(|(_, _, n)| n.clone())
            .collect();
        inner
            .objects
            .retain(|(_, ns, _), _| ns.is_empty() || namespaces.contains(ns));
    }

    /// The node ports every node must listen on, and a generation that changes
    /// whenever they do.
    pub fn ports(&self) -> tokio::sync::watch::Receiver<(u64, Vec<u16>)> {
        self.ports.subscribe()
    }

    fn publish_ports(&self, inner: &Inner) {
        let ports: Vec<u16> = node_ports(inner).into_iter().collect();
        self.ports.send_if_modified(|(generation, current)| {
            if *current == ports {
                return false;
            }
            *generation += 1;
            *current = ports;
            true
        });
    }
}

fn node_ports(inner: &Inner) -> BTreeSet<u16> {
    inner
        .objects
        .iter()
        .filter(|((r, _, _), _)| r == "services")
        .flat_map(|(_, svc)| {
            svc["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p["nodePort"].as_u64())
                .filter_map(|p| u16::try_from(p).ok())
        })
        .collect()
}

impl Inner {
    fn next_rv(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }
}

fn invalid(kind: &Kind, name: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        kind: kind.kind.into(),
        name: name.into(),
        message: message.into(),
    }
}

/// A body's kind/apiVersion must be the URL's, when set.
fn check_type(body: &Value, kind: &Kind) -> Result<(), ApiError> {
    if let Some(k) = body["kind"].as_str().filter(|k| !k.is_empty()) {
        if k != kind.kind {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data (v1) does not match the expected API version (v1): kind {k:?} is not {:?}",
                kind.kind
            )));
        }
    }
    if let Some(v) = body["apiVersion"].as_str().filter(|v| !v.is_empty()) {
        if v != "v1" {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version (v1)"
            )));
        }
    }
    Ok(())
}

fn default_namespace(obj: &mut Value, name: &str) {
    if !obj["metadata"]["labels"].is_object() {
        obj["metadata"]["labels"] = json!({});
    }
    obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    obj["spec"] = json!({"finalizers": ["kubernetes"]});
    obj["status"] = json!({"phase": "Active"});
}

fn check_configmap(obj: &Value) -> Result<(), String> {
    for field in ["data", "binaryData"] {
        if let Some(map) = obj[field].as_object() {
            for (k, v) in map {
                if k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(format!("{field}[{k}]: Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"));
                }
                if !v.is_string() {
                    return Err(format!("{field}[{k}]: Invalid value: must be a string"));
                }
            }
        } else if !obj[field].is_null() {
            return Err(format!("{field}: Invalid value: must be a map of strings"));
        }
    }
    Ok(())
}

const NODE_PORT_MIN: u16 = 30000;
const NODE_PORT_MAX: u16 = 32767;

/// A Service as the API server completes it: type, cluster IP, port protocols and
/// target ports, node ports for NodePort/LoadBalancer (allocated in 30000-32767
/// when not given, refused when taken), traffic policies; `old` keeps the
/// addresses and ports an update does not change.
fn default_service(
    obj: &mut Value,
    inner: &Inner,
    old: Option<&Value>,
    net: (u8, u8),
) -> Result<(), String> {
    let self_key = old.map(|o| {
        (
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    let others = || {
        inner.objects.iter().filter(|((r, ns, n), _)| {
            r == "services" && self_key.as_ref() != Some(&(ns.clone(), n.clone()))
        })
    };
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    if !matches!(
        ty.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        return Err(format!("spec.type: Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
    }
    spec["type"] = json!(ty);
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" {
        return Err("spec.ports: Required value".into());
    }
    let used_ports: BTreeSet<u64> = others()
        .flat_map(|(_, s)| {
            s["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p["nodePort"].as_u64())
        })
        .collect();
    let old_ports = old
        .and_then(|o| o["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    let mut taken_here: BTreeSet<u64> = BTreeSet::new();
    let mut out = Vec::new();
    for (i, mut p) in ports.into_iter().enumerate() {
        let Some(port) = p["port"].as_u64().filter(|p| (1..=65535).contains(p)) else {
            return Err(format!(
                "spec.ports[{i}].port: Invalid value: {}: must be between 1 and 65535, inclusive",
                p["port"]
            ));
        };
        if p["protocol"].as_str().is_none() {
            p["protocol"] = json!("TCP");
        }
        if p["targetPort"].is_null() {
            p["targetPort"] = json!(port);
        }
        if ty == "NodePort" || ty == "LoadBalancer" {
            let wanted = p["nodePort"].as_u64().filter(|n| *n != 0);
            let node_port = match wanted {
                Some(n) => {
                    if !(u64::from(NODE_PORT_MIN)..=u64::from(NODE_PORT_MAX)).contains(&n) {
                        return Err(format!("spec.ports[{i}].nodePort: Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}"));
                    }
                    if used_ports.contains(&n) || taken_here.contains(&n) {
                        return Err(format!("spec.ports[{i}].nodePort: Invalid value: {n}: provided port is already allocated"));
                    }
                    n
                }
                None => {
                    // an update keeps the node port the same port had before
                    let kept = old_ports
                        .iter()
                        .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                        .and_then(|o| o["nodePort"].as_u64())
                        .filter(|n| !taken_here.contains(n));
                    match kept {
                        Some(n) => n,
                        None => allocate_node_port(&used_ports, &taken_here)
                            .ok_or("spec.ports: Internal error: range is full")?,
                    }
                }
            };
            taken_here.insert(node_port);
            p["nodePort"] = json!(node_port);
        } else if let Some(m) = p.as_object_mut() {
            m.remove("nodePort");
        }
        out.push(p);
    }
    spec["ports"] = json!(out);
    if ty != "ExternalName" {
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str().map(String::from));
        let ip = match (spec["clusterIP"].as_str(), old_ip) {
            (Some(ip), _) if !ip.is_empty() => ip.to_string(),
            (_, Some(ip)) => ip,
            _ => {
                let used: BTreeSet<String> = others()
                    .filter_map(|(_, s)| s["spec"]["clusterIP"].as_str().map(String::from))
                    .collect();
                allocate_cluster_ip(&used, net)
            }
        };
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        spec["internalTrafficPolicy"] =
            json!(spec["internalTrafficPolicy"].as_str().unwrap_or("Cluster"));
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if (ty == "NodePort" || ty == "LoadBalancer") && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    if ty == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    obj["status"] = json!({"loadBalancer": {}});
    Ok(())
}

/// A random free node port, as the API server's allocator picks them.
fn allocate_node_port(used: &BTreeSet<u64>, here: &BTreeSet<u64>) -> Option<u64> {
    let span = u64::from(NODE_PORT_MAX - NODE_PORT_MIN) + 1;
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    let start = u64::from_le_bytes(b) % span;
    (0..span)
        .map(|i| u64::from(NODE_PORT_MIN) + (start + i) % span)
        .find(|p| !used.contains(p) && !here.contains(p))
}

/// A free address in the service network (a /16), never `.1` (kubernetes) or
/// `.10` (kube-dns) of its first /24.
fn allocate_cluster_ip(used: &BTreeSet<String>, (a, b): (u8, u8)) -> String {
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let start = u32::from(u16::from_le_bytes(r));
    (0..65_534u32)
        .map(|i| 1 + (start + i) % 65_534)
        .filter(|n| n & 0xff != 0 && *n != 1 && *n != 10)
        .map(|n| format!("{a}.{b}.{}.{}", n >> 8, n & 0xff))
        .find(|ip| !used.contains(ip))
        .unwrap_or_else(|| format!("{a}.{b}.255.254"))
}

fn node_object(n: &NodeRecord, rv: u64, ready: bool) -> Value {
    // k3s labels its nodes a little differently from kubeadm (kind)
    let k3s = version().contains("k3s");
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
    });
    if k3s {
        labels["node.kubernetes.io/instance-type"] = json!("k3s");
    }
    if n.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!(if k3s { "true" } else { "" });
        if k3s {
            labels["node-role.kubernetes.io/master"] = json!("true");
        }
    }
    for (k, v) in &n.labels {
        labels[k] = json!(v);
    }
    let now = rfc3339_now();
    let condition = if ready {
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "kubelet is posting ready status",
               "lastHeartbeatTime": now, "lastTransitionTime": n.created})
    } else {
        json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
               "message": "Kubelet stopped posting node status.",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": n.name,
            "uid": n.uid,
            "resourceVersion": rv.to_string(),
            "creationTimestamp": n.created,
            "labels": labels,
            "annotations": {"k3s.io/internal-ip": n.ip, "k3s.io/hostname": n.name},
        },
        "spec": {"podCIDR": "10.42.0.0/24", "podCIDRs": ["10.42.0.0/24"], "providerID": format!("k3s://{}", n.name)},
        "status": {
            "conditions": [condition],
            "addresses": [
                {"type": "InternalIP", "address": n.ip},
                {"type": "Hostname", "address": n.name}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": n.uid, "containerRuntimeVersion": if k3s { "containerd://1.7.23-k3s2" } else { "containerd://1.7.24" },
                "kernelVersion": "sim", "kubeProxyVersion": version(), "kubeletVersion": version(),
                "machineID": "", "operatingSystem": "linux", "osImage": "kecs node simulator", "systemUUID": n.uid
            }
        }
    })
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    #[test]
    fn state_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("kecs-sim-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (s, restarted) = State::open("t".into(), "ca".into(), Some(dir.clone()), (10, 43));
        assert!(!restarted);
        let created = s.create("namespaces", "", &ns("keep")).unwrap();
        let svc = s
            .create(
                "services",
                "keep",
                &json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
            )
            .unwrap();
        let rv: u64 = svc["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        drop(s);
        let (s, restarted) = State::open("t".into(), "ca".into(), Some(dir.clone()), (10, 43));
        assert!(restarted);
        let again = s.get("namespaces", "", "keep", None).unwrap();
        assert_eq!(again["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(s.get("services", "keep", "web", None).unwrap(), svc);
        let next = s
            .create("configmaps", "keep", &json!({"metadata": {"name": "c"}}))
            .unwrap();
        let next_rv: u64 = next["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            next_rv > rv,
            "resourceVersions keep growing across restarts"
        );
        assert_eq!(
            s.ports().borrow().1,
            vec![svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn services_get_node_ports_and_conflicts_are_refused() {
        let (s, _) = State::open("t".into(), "ca".into(), None, (10, 96));
        let a = s
            .create(
                "services",
                "default",
                &json!({"metadata": {"name": "a"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}),
            )
            .unwrap();
        assert_eq!(a["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(a["spec"]["ports"][0]["protocol"], "TCP");
        let b = s.create(
            "services",
            "default",
            &json!({"metadata": {"name": "b"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}),
        );
        assert!(matches!(b, Err(ApiError::Invalid { .. })), "{b:?}");
        let c = s
            .create(
                "services",
                "default",
                &json!({"metadata": {"name": "c"}, "spec": {"type": "NodePort", "ports": [{"port": 81}]}}),
            )
            .unwrap();
        let p = c["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&p) && p != 30080);
        // an update that omits the node port keeps it
        let mut upd = c.clone();
        upd["spec"]["ports"][0]
            .as_object_mut()
            .unwrap()
            .remove("nodePort");
        upd["metadata"]["labels"] = json!({"x": "y"});
        let after = s.replace("services", "default", "c", &upd).unwrap();
        assert_eq!(after["spec"]["ports"][0]["nodePort"].as_u64(), Some(p));
        s.delete("services", "default", "a").unwrap();
        assert_eq!(s.ports().borrow().1, vec![p as u16]);
    }

    #[test]
    fn protected_namespaces_and_immutable_config_maps() {
        let (s, _) = State::open("t".into(), "ca".into(), None, (10, 96));
        assert!(matches!(
            s.delete("namespaces", "", "kube-system"),
            Err(ApiError::Forbidden { .. })
        ));
        let cm = s
            .create(
                "configmaps",
                "default",
                &json!({"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": true}),
            )
            .unwrap();
        let mut changed = cm.clone();
        changed["data"]["a"] = json!("2");
        assert!(matches!(
            s.replace("configmaps", "default", "frozen", &changed),
            Err(ApiError::Invalid { .. })
        ));
        let mut labelled = cm.clone();
        labelled["metadata"]["labels"] = json!({"ok": "yes"});
        assert!(s
            .replace("configmaps", "default", "frozen", &labelled)
            .is_ok());
    }

    fn server(name: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            control_plane: true,
            ip: "10.0.0.1".into(),
            labels: Default::default(),
            created: String::new(),
            uid: String::new(),
            peer_url: format!("https://{name}:6443"),
        }
    }

    #[test]
    fn replicas_take_only_newer_state_and_members_keep_their_order() {
        let (leader, _) = State::open("t".into(), "ca".into(), None, (10, 43));
        let (follower, _) = State::open_with("t".into(), "ca".into(), None, (10, 43), false);
        assert_eq!(
            follower.resource_version(),
            0,
            "a joining server starts empty"
        );
        for name in ["s-0", "s-1", "s-2"] {
            leader.register(server(name));
        }
        // an agent is no member
        leader.register(NodeRecord {
            peer_url: String::new(),
            ..server("agent")
        });
        leader.register(server("s-0"));
        let names: Vec<String> = leader.members().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["s-0", "s-1", "s-2"]);
        let old = leader.snapshot();
        leader.create("namespaces", "", &ns("later")).unwrap();
        assert!(follower.install(&leader.snapshot()));
        assert!(!follower.install(&old), "an older state is refused");
        assert!(follower.get("namespaces", "", "later", None).is_ok());
        assert_eq!(follower.members(), leader.members());
        assert_eq!(follower.resource_version(), leader.resource_version());
    }

    #[test]
    fn selectors_filter_lists() {
        let (s, _) = State::open("t".into(), "ca".into(), None, (10, 96));
        let sel = Selectors::parse("metadata.name=default", "").unwrap();
        let l = s.list("namespaces", None, &sel, None);
        assert_eq!(l["items"].as_array().unwrap().len(), 1);
        let sel = Selectors::parse("", "kubernetes.io/cluster-service=true").unwrap();
        let l = s.list("services", Some("kube-system"), &sel, None);
        assert_eq!(l["items"][0]["metadata"]["name"], "kube-dns");
    }
}
