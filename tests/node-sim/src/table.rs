//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the columns a real
//! API server prints for each kind the simulator serves (priority 1 = `-o wide`).

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// (name, type, priority, description)
type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = ("Name", "string", 0, "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names");
const AGE: Column = ("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata");

fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Node" => vec![
            NAME,
            ("Status", "string", 0, "The status of the node"),
            ("Roles", "string", 0, "The roles of the node"),
            AGE,
            ("Version", "string", 0, "Kubelet Version reported by the node."),
            ("Internal-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
            ("External-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
            ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "Namespace" => vec![
            NAME,
            ("Status", "string", 0, "The status of the namespace"),
            AGE,
        ],
        "Service" => vec![
            NAME,
            ("Type", "string", 0, "type determines how the Service is exposed. Defaults to ClusterIP."),
            ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
            ("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
            AGE,
            ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        "ConfigMap" => vec![
            NAME,
            ("Data", "string", 0, "Data contains the configuration data."),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

fn cells(kind: &str, o: &Value) -> Vec<Value> {
    let name = json!(o["metadata"]["name"].as_str().unwrap_or(""));
    let age = json!(age(o["metadata"]["creationTimestamp"].as_str()));
    match kind {
        "Node" => {
            let ready = o["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .is_some_and(|c| c["status"] == "True");
            let mut roles: Vec<&str> = o["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            roles.sort_unstable();
            let addr = |ty: &str| {
                o["status"]["addresses"]
                    .as_array()
                    .and_then(|a| a.iter().find(|a| a["type"] == ty))
                    .and_then(|a| a["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            let info = &o["status"]["nodeInfo"];
            vec![
                name,
                json!(if ready { "Ready" } else { "NotReady" }),
                json!(if roles.is_empty() {
                    "<none>".to_string()
                } else {
                    roles.join(",")
                }),
                age,
                info["kubeletVersion"].clone(),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                info["osImage"].clone(),
                info["kernelVersion"].clone(),
                info["containerRuntimeVersion"].clone(),
            ]
        }
        "Namespace" => vec![name, o["status"]["phase"].clone(), age],
        "Service" => {
            let spec = &o["spec"];
            let ty = spec["type"].as_str().unwrap_or("ClusterIP");
            let mut external: Vec<String> = spec["externalIPs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let external = match ty {
                "ExternalName" => spec["externalName"].as_str().unwrap_or("").to_string(),
                "LoadBalancer" => {
                    if let Some(ing) = o["status"]["loadBalancer"]["ingress"].as_array() {
                        external.extend(ing.iter().filter_map(|i| {
                            i["ip"]
                                .as_str()
                                .or(i["hostname"].as_str())
                                .map(String::from)
                        }));
                    }
                    if external.is_empty() {
                        "<pending>".into()
                    } else {
                        external.join(",")
                    }
                }
                _ if external.is_empty() => "<none>".into(),
                _ => external.join(","),
            };
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_u64() {
                                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                                None => format!("{}/{proto}", p["port"]),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selector = spec["selector"]
                .as_object()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(ty),
                json!(spec["clusterIP"].as_str().unwrap_or("<none>")),
                json!(external),
                json!(if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",")
                }),
                age,
                json!(selector),
            ]
        }
        "ConfigMap" => {
            let n = o["data"].as_object().map_or(0, |d| d.len())
                + o["binaryData"].as_object().map_or(0, |d| d.len());
            vec![name, json!(n), age]
        }
        _ => vec![name, age],
    }
}

/// A Table of `items` (one object for a GET of a single object). `include` is
/// the request's `includeObject`: None, Object, or Metadata (the default).
pub fn table(kind: &str, items: &[Value], list_rv: Option<&str>, include: &str) -> Value {
    let defs: Vec<Value> = columns(kind)
        .into_iter()
        .map(|(name, ty, priority, description)| {
            json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                   "description": description, "priority": priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(kind, o)});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = list_rv {
        meta["resourceVersion"] = json!(rv);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
           "columnDefinitions": defs, "rows": rows})
}

/// The AGE cell: how long ago an RFC 3339 timestamp was, as `kubectl` prints it.
fn age(ts: Option<&str>) -> String {
    let Some(then) = ts.and_then(parse_rfc3339) else {
        return "<unknown>".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    human_duration(now.saturating_sub(then))
}

/// apimachinery's `duration.HumanDuration`.
pub fn human_duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    let y = d / 365;
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            mm => format!("{h}h{mm}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        match h % 24 {
            0 => format!("{d}d"),
            hh => format!("{d}d{hh}h"),
        }
    } else if y < 2 {
        format!("{d}d")
    } else if y < 8 {
        match d % 365 {
            0 => format!("{y}y"),
            dd => format!("{y}y{dd}d"),
        }
    } else {
        format!("{y}y")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` → seconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // days from civil (Howard Hinnant), the inverse of logfmt's
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(50 * 3600), "2d2h");
    }

    #[test]
    fn parses_what_logfmt_prints() {
        assert_eq!(
            parse_rfc3339(&crate::logfmt::rfc3339(1_795_665_600)),
            Some(1_795_665_600)
        );
    }

    #[test]
    fn service_row_shows_node_ports() {
        let svc = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.5",
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let t = table("Service", &[svc], Some("5"), "None");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[4], "80:30080/TCP");
        assert_eq!(cells[3], "<none>");
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 7);
    }
}
