//! The OpenAPI documents kubectl fetches before it sends objects: `/openapi/v3`
//! (index), `/openapi/v3/api/v1` and `/openapi/v2`. They are derived here from the
//! kinds the simulator serves — the same definition names, fields and types as
//! Kubernetes v1.31's `core/v1` schemas, trimmed to those kinds — rather than
//! copied from upstream, so they stay small. The same schemas drive
//! `unknown_fields`, the server-side check behind `fieldValidation=Strict`.

use serde_json::{json, Map, Value};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const CORE: &str = "io.k8s.api.core.v1";

/// A reference to another definition, in the document's own `$ref` style.
#[derive(Clone, Copy)]
enum Style {
    V2,
    V3,
}

impl Style {
    fn r(self, name: &str) -> Value {
        match self {
            // v3 wraps references in allOf so a description could sit beside them
            Style::V3 => json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}]}),
            Style::V2 => json!({"$ref": format!("#/definitions/{name}")}),
        }
    }
}

fn s() -> Value {
    json!({"type": "string"})
}
fn int(format: &str) -> Value {
    json!({"type": "integer", "format": format})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}
fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}
fn array(item: Value) -> Value {
    json!({"type": "array", "items": item})
}
fn obj(props: Vec<(&str, Value)>) -> Value {
    let m: Map<String, Value> = props.into_iter().map(|(k, v)| (k.into(), v)).collect();
    json!({"type": "object", "properties": m})
}
fn gvk(mut schema: Value, kind: &str) -> Value {
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": "", "kind": kind, "version": "v1"}]);
    schema
}

fn top(st: Style, kind: &str, extra: Vec<(&str, Value)>) -> Value {
    let mut props = vec![
        ("apiVersion", s()),
        ("kind", s()),
        ("metadata", st.r(&format!("{META}.ObjectMeta"))),
    ];
    props.extend(extra);
    gvk(obj(props), kind)
}

fn list(st: Style, kind: &str) -> Value {
    let mut l = obj(vec![
        ("apiVersion", s()),
        ("items", array(st.r(&format!("{CORE}.{kind}")))),
        ("kind", s()),
        ("metadata", st.r(&format!("{META}.ListMeta"))),
    ]);
    l["required"] = json!(["items"]);
    gvk(l, &format!("{kind}List"))
}

/// Every definition, by its upstream name.
fn schemas(st: Style) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |name: String, v: Value| {
        m.insert(name, v);
    };
    put(
        format!("{META}.ObjectMeta"),
        obj(vec![
            ("annotations", string_map()),
            ("creationTimestamp", st.r(&format!("{META}.Time"))),
            ("deletionGracePeriodSeconds", int("int64")),
            ("deletionTimestamp", st.r(&format!("{META}.Time"))),
            ("finalizers", strings()),
            ("generateName", s()),
            ("generation", int("int64")),
            ("labels", string_map()),
            (
                "managedFields",
                array(st.r(&format!("{META}.ManagedFieldsEntry"))),
            ),
            ("name", s()),
            ("namespace", s()),
            (
                "ownerReferences",
                array(st.r(&format!("{META}.OwnerReference"))),
            ),
            ("resourceVersion", s()),
            ("selfLink", s()),
            ("uid", s()),
        ]),
    );
    put(format!("{META}.Time"), time());
    put(
        format!("{META}.ListMeta"),
        obj(vec![
            ("continue", s()),
            ("remainingItemCount", int("int64")),
            ("resourceVersion", s()),
            ("selfLink", s()),
        ]),
    );
    put(
        format!("{META}.ManagedFieldsEntry"),
        obj(vec![
            ("apiVersion", s()),
            ("fieldsType", s()),
            ("fieldsV1", json!({"type": "object"})),
            ("manager", s()),
            ("operation", s()),
            ("subresource", s()),
            ("time", st.r(&format!("{META}.Time"))),
        ]),
    );
    let mut owner = obj(vec![
        ("apiVersion", s()),
        ("blockOwnerDeletion", boolean()),
        ("controller", boolean()),
        ("kind", s()),
        ("name", s()),
        ("uid", s()),
    ]);
    owner["required"] = json!(["apiVersion", "kind", "name", "uid"]);
    put(format!("{META}.OwnerReference"), owner);
    let condition = obj(vec![
        ("lastTransitionTime", st.r(&format!("{META}.Time"))),
        ("message", s()),
        ("observedGeneration", int("int64")),
        ("reason", s()),
        ("status", s()),
        ("type", s()),
    ]);
    put(format!("{META}.Condition"), condition);
    put(
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString".into(),
        json!({"type": "string", "format": "int-or-string"}),
    );

    put(
        format!("{CORE}.Namespace"),
        top(
            st,
            "Namespace",
            vec![
                ("spec", st.r(&format!("{CORE}.NamespaceSpec"))),
                ("status", st.r(&format!("{CORE}.NamespaceStatus"))),
            ],
        ),
    );
    put(
        format!("{CORE}.NamespaceSpec"),
        obj(vec![("finalizers", strings())]),
    );
    put(
        format!("{CORE}.NamespaceStatus"),
        obj(vec![
            (
                "conditions",
                array(st.r(&format!("{CORE}.NamespaceCondition"))),
            ),
            ("phase", s()),
        ]),
    );
    put(
        format!("{CORE}.NamespaceCondition"),
        obj(vec![
            ("lastTransitionTime", st.r(&format!("{META}.Time"))),
            ("message", s()),
            ("reason", s()),
            ("status", s()),
            ("type", s()),
        ]),
    );
    put(
        format!("{CORE}.ConfigMap"),
        top(
            st,
            "ConfigMap",
            vec![
                (
                    "binaryData",
                    json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}}),
                ),
                ("data", string_map()),
                ("immutable", boolean()),
            ],
        ),
    );
    put(
        format!("{CORE}.Service"),
        top(
            st,
            "Service",
            vec![
                ("spec", st.r(&format!("{CORE}.ServiceSpec"))),
                ("status", st.r(&format!("{CORE}.ServiceStatus"))),
            ],
        ),
    );
    put(
        format!("{CORE}.ServiceSpec"),
        obj(vec![
            ("allocateLoadBalancerNodePorts", boolean()),
            ("clusterIP", s()),
            ("clusterIPs", strings()),
            ("externalIPs", strings()),
            ("externalName", s()),
            ("externalTrafficPolicy", s()),
            ("healthCheckNodePort", int("int32")),
            ("internalTrafficPolicy", s()),
            ("ipFamilies", strings()),
            ("ipFamilyPolicy", s()),
            ("loadBalancerClass", s()),
            ("loadBalancerIP", s()),
            ("loadBalancerSourceRanges", strings()),
            ("ports", array(st.r(&format!("{CORE}.ServicePort")))),
            ("publishNotReadyAddresses", boolean()),
            ("selector", string_map()),
            ("sessionAffinity", s()),
            (
                "sessionAffinityConfig",
                st.r(&format!("{CORE}.SessionAffinityConfig")),
            ),
            ("trafficDistribution", s()),
            ("type", s()),
        ]),
    );
    let mut port = obj(vec![
        ("appProtocol", s()),
        ("name", s()),
        ("nodePort", int("int32")),
        ("port", int("int32")),
        ("protocol", s()),
        (
            "targetPort",
            st.r("io.k8s.apimachinery.pkg.util.intstr.IntOrString"),
        ),
    ]);
    port["required"] = json!(["port"]);
    put(format!("{CORE}.ServicePort"), port);
    put(
        format!("{CORE}.SessionAffinityConfig"),
        obj(vec![("clientIP", st.r(&format!("{CORE}.ClientIPConfig")))]),
    );
    put(
        format!("{CORE}.ClientIPConfig"),
        obj(vec![("timeoutSeconds", int("int32"))]),
    );
    put(
        format!("{CORE}.ServiceStatus"),
        obj(vec![
            ("conditions", array(st.r(&format!("{META}.Condition")))),
            ("loadBalancer", st.r(&format!("{CORE}.LoadBalancerStatus"))),
        ]),
    );
    put(
        format!("{CORE}.LoadBalancerStatus"),
        obj(vec![(
            "ingress",
            array(st.r(&format!("{CORE}.LoadBalancerIngress"))),
        )]),
    );
    put(
        format!("{CORE}.LoadBalancerIngress"),
        obj(vec![
            ("hostname", s()),
            ("ip", s()),
            ("ipMode", s()),
            (
                "ports",
                json!({"type": "array", "items": {"type": "object"}}),
            ),
        ]),
    );
    // Nodes are written by their kubelet, not through this API: spec and status
    // are open objects here.
    put(
        format!("{CORE}.Node"),
        top(
            st,
            "Node",
            vec![
                (
                    "spec",
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                ),
                (
                    "status",
                    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                ),
            ],
        ),
    );
    for k in ["Namespace", "ConfigMap", "Service", "Node"] {
        put(format!("{CORE}.{k}List"), list(st, k));
    }
    m
}

/// The paths of the served resources. Write operations document the
/// `fieldValidation` query parameter, as a real server's do: kubectl then leaves
/// validation to the server (`fieldValidation=Strict`, checked against these same
/// schemas by `unknown_fields`) instead of fetching the protobuf OpenAPI v2.
fn paths(st: Style) -> Value {
    let mut paths = Map::new();
    for k in crate::state::KINDS {
        let collection = if k.namespaced {
            format!("/api/v1/namespaces/{{namespace}}/{}", k.resource)
        } else {
            format!("/api/v1/{}", k.resource)
        };
        let schema = |name: &str| match st {
            Style::V3 => {
                json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{CORE}.{name}")}}}})
            }
            Style::V2 => json!({"schema": {"$ref": format!("#/definitions/{CORE}.{name}")}}),
        };
        let q = |name: &str| match st {
            Style::V3 => {
                json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
            }
            Style::V2 => {
                json!({"name": name, "in": "query", "type": "string", "uniqueItems": true})
            }
        };
        let gvk = json!({"group": "", "version": "v1", "kind": k.kind});
        let mut item = json!({
            "get": {"operationId": format!("list{}", k.kind), "responses": {"200": schema(&format!("{}List", k.kind))},
                    "x-kubernetes-action": "list", "x-kubernetes-group-version-kind": gvk,
                    "parameters": [q("fieldSelector"), q("labelSelector"), q("resourceVersion")]},
        });
        if k.verbs.contains(&"create") {
            item["post"] = json!({"operationId": format!("create{}", k.kind), "responses": {"201": schema(k.kind)},
                    "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk,
                    "parameters": [q("dryRun"), q("fieldManager"), q("fieldValidation")]});
        }
        paths.insert(collection.clone(), item);
        let one = format!("{collection}/{{name}}");
        let mut item = json!({
            "get": {"operationId": format!("read{}", k.kind), "responses": {"200": schema(k.kind)},
                    "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
        });
        if k.verbs.contains(&"update") {
            for (verb, action) in [("put", "put"), ("patch", "patch"), ("delete", "delete")] {
                item[verb] = json!({"operationId": format!("{action}{}", k.kind), "responses": {"200": schema(k.kind)},
                    "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                    "parameters": [q("dryRun"), q("fieldManager"), q("fieldValidation")]});
            }
        }
        paths.insert(one, item);
    }
    Value::Object(paths)
}

pub fn v2() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": crate::state::version()},
           "paths": paths(Style::V2), "definitions": schemas(Style::V2)})
}

/// The hash kubectl caches `/openapi/v3/api/v1` by: changes with the document.
fn v3_hash() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v3_core().to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

pub fn v3_index() -> Value {
    json!({"paths": {"api/v1": {"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", v3_hash())}}})
}

pub fn v3_core() -> Value {
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": crate::state::version()},
           "paths": paths(Style::V3), "components": {"schemas": schemas(Style::V3)}})
}

/// Fields of `obj` that the kind's schema does not have, as the API server's
/// strict decoding names them (`spec.ports[0].bogus`).
pub fn unknown_fields(kind: &str, obj: &Value) -> Vec<String> {
    let defs = schemas(Style::V2);
    let mut out = Vec::new();
    if let Some(schema) = defs.get(&format!("{CORE}.{kind}")) {
        walk(&defs, schema, obj, "", &mut out);
    }
    out
}

fn walk(defs: &Map<String, Value>, schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => match defs.get(r.trim_start_matches("#/definitions/")) {
            Some(s) => s,
            None => return,
        },
        None => schema,
    };
    match v {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, child) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match props.get(k) {
                        Some(s) => walk(defs, s, child, &p, out),
                        None => out.push(p),
                    }
                }
            } else if let Some(extra) = schema.get("additionalProperties") {
                for (k, child) in m {
                    walk(defs, extra, child, &format!("{path}[{k}]"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, child) in items.iter().enumerate() {
                    walk(defs, item, child, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        for st in [Style::V2, Style::V3] {
            let doc = match st {
                Style::V2 => v2(),
                Style::V3 => v3_core(),
            };
            let text = doc.to_string();
            let defs = schemas(st);
            for part in text.split("\"$ref\":\"").skip(1) {
                let target = part.split('"').next().unwrap();
                let name = target.rsplit('/').next().unwrap();
                assert!(defs.contains_key(name), "{target} does not resolve");
            }
        }
    }

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"bogus": 1, "ports": [{"port": 80, "targetPort": "http", "extra": true}]}});
        assert_eq!(
            unknown_fields("Service", &svc),
            vec!["spec.bogus".to_string(), "spec.ports[0].extra".to_string()]
        );
        let cm = json!({"metadata": {"name": "a"}, "data": {"k": "v"}});
        assert!(unknown_fields("ConfigMap", &cm).is_empty());
    }
}
