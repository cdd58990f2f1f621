//! The simulated cluster state held by a server: registered nodes, namespaces and
//! kube-system config maps, with resourceVersions as a real API server hands them out.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

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
}

struct Object {
    value: Value,
}

pub struct State {
    inner: Mutex<Inner>,
    pub token: String,
}

struct Inner {
    resource_version: u64,
    nodes: BTreeMap<String, (NodeRecord, u64)>,
    namespaces: BTreeMap<String, Object>,
    configmaps: BTreeMap<String, Object>,
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

fn meta(name: &str, namespace: Option<&str>, rv: u64) -> Value {
    let mut m = json!({
        "name": name,
        "uid": new_uid(),
        "resourceVersion": rv.to_string(),
        "creationTimestamp": rfc3339_now(),
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

impl State {
    pub fn new(token: String, node_hosts: String) -> Self {
        let mut inner = Inner {
            resource_version: 1,
            nodes: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            configmaps: BTreeMap::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rv = inner.next_rv();
            inner.namespaces.insert(
                ns.into(),
                Object {
                    value: namespace_object(ns, meta(ns, None, rv)),
                },
            );
        }
        let rv = inner.next_rv();
        let mut cm = json!({
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": meta("coredns", Some("kube-system"), rv),
            "data": {
                "Corefile": ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    hosts /etc/coredns/NodeHosts {\n      ttl 60\n      reload 15s\n      fallthrough\n    }\n    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n",
                "NodeHosts": node_hosts,
            }
        });
        cm["metadata"]["labels"] = json!({"objectset.rio.cattle.io/hash": "sim"});
        inner
            .configmaps
            .insert("coredns".into(), Object { value: cm });
        State {
            inner: Mutex::new(inner),
            token,
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
        if let Some(cm) = inner.configmaps.get_mut("coredns") {
            let hosts = cm.value["data"]["NodeHosts"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if !hosts.lines().any(|l| l == line) {
                cm.value["data"]["NodeHosts"] = json!(format!("{hosts}{line}\n"));
            }
        }
        inner.nodes.insert(node.name.clone(), (node, rv));
    }

    pub fn list_nodes(&self) -> Value {
        let inner = self.inner.lock().unwrap();
        let items: Vec<Value> = inner
            .nodes
            .values()
            .map(|(n, rv)| node_object(n, *rv))
            .collect();
        list("NodeList", inner.resource_version, items)
    }

    pub fn get_node(&self, name: &str) -> Option<Value> {
        let inner = self.inner.lock().unwrap();
        inner.nodes.get(name).map(|(n, rv)| node_object(n, *rv))
    }

    pub fn list_namespaces(&self) -> Value {
        let inner = self.inner.lock().unwrap();
        let items = inner.namespaces.values().map(|o| o.value.clone()).collect();
        list("NamespaceList", inner.resource_version, items)
    }

    pub fn get_namespace(&self, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .unwrap()
            .namespaces
            .get(name)
            .map(|o| o.value.clone())
    }

    /// Creates a namespace from a request body; Err(None) = already exists, Err(Some) = invalid.
    pub fn create_namespace(&self, body: &Value) -> Result<Value, Option<String>> {
        let name = body["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Some("metadata.name: Required value: name is required".to_string()))?
            .to_string();
        if !is_dns_label(&name) {
            return Err(Some(format!("metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")));
        }
        let mut inner = self.inner.lock().unwrap();
        if inner.namespaces.contains_key(&name) {
            return Err(None);
        }
        let rv = inner.next_rv();
        let mut m = meta(&name, None, rv);
        if let Some(labels) = body["metadata"].get("labels") {
            m["labels"] = labels.clone();
        }
        let obj = namespace_object(&name, m);
        inner.namespaces.insert(name, Object { value: obj.clone() });
        Ok(obj)
    }

    pub fn delete_namespace(&self, name: &str) -> Option<Value> {
        let mut inner = self.inner.lock().unwrap();
        let rv = inner.next_rv();
        inner.namespaces.remove(name).map(|o| {
            let mut v = o.value;
            v["metadata"]["resourceVersion"] = json!(rv.to_string());
            v["metadata"]["deletionTimestamp"] = json!(rfc3339_now());
            v["status"]["phase"] = json!("Terminating");
            v
        })
    }

    pub fn list_configmaps(&self, namespace: &str) -> Value {
        let inner = self.inner.lock().unwrap();
        let items = if namespace == "kube-system" {
            inner.configmaps.values().map(|o| o.value.clone()).collect()
        } else {
            Vec::new()
        };
        list("ConfigMapList", inner.resource_version, items)
    }

    pub fn get_configmap(&self, namespace: &str, name: &str) -> Option<Value> {
        if namespace != "kube-system" {
            return None;
        }
        self.inner
            .lock()
            .unwrap()
            .configmaps
            .get(name)
            .map(|o| o.value.clone())
    }

    pub fn namespace_exists(&self, name: &str) -> bool {
        self.inner.lock().unwrap().namespaces.contains_key(name)
    }
}

impl Inner {
    fn next_rv(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }
}

fn list(kind: &str, rv: u64, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

fn namespace_object(name: &str, mut metadata: Value) -> Value {
    let labels = metadata.get("labels").cloned().unwrap_or_else(|| json!({}));
    let mut labels = labels;
    labels["kubernetes.io/metadata.name"] = json!(name);
    metadata["labels"] = labels;
    json!({
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": metadata,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

fn node_object(n: &NodeRecord, rv: u64) -> Value {
    let mut labels = json!({
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "k3s",
    });
    if n.control_plane {
        labels["node-role.kubernetes.io/control-plane"] = json!("true");
        labels["node-role.kubernetes.io/master"] = json!("true");
    }
    for (k, v) in &n.labels {
        labels[k] = json!(v);
    }
    let now = rfc3339_now();
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
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now, "lastTransitionTime": n.created
            }],
            "addresses": [
                {"type": "InternalIP", "address": n.ip},
                {"type": "Hostname", "address": n.name}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": n.uid, "containerRuntimeVersion": "containerd://1.7.23-k3s2",
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
