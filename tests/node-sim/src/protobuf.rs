//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) for the
//! kinds the simulator serves: the 4-byte magic `k8s\0` followed by a
//! `runtime.Unknown` message (typeMeta, raw bytes of the object's message).
//!
//! The codec is table-driven: each message is a list of (field number, JSON
//! name, type), converted to and from the same JSON the rest of the API uses. The
//! field numbers are Kubernetes' `generated.proto` ones for `core/v1` and
//! `meta/v1`, as carried by the `k8s-pb` crate (kube-rs); only the messages of
//! the served kinds are listed, and unknown fields are skipped on decode.

use serde_json::{json, Map, Value};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8; 4] = b"k8s\0";

#[derive(Clone, Copy)]
enum Ty {
    Str,
    I64,
    I32,
    Bool,
    Msg(&'static str),
    /// meta/v1 Time {seconds, nanos} ↔ RFC 3339
    Time,
    /// intstr.IntOrString {type, intVal, strVal} ↔ number or string
    IntOrStr,
    /// map<string,string>
    MapStr,
    /// map<string,bytes> (ConfigMap.binaryData)
    MapBytes,
    /// meta/v1 FieldsV1 {raw: JSON bytes} ↔ JSON object
    FieldsV1,
}

/// (field number, JSON name, type, repeated)
type Field = (u32, &'static str, Ty, bool);

const fn f(tag: u32, name: &'static str, ty: Ty) -> Field {
    (tag, name, ty, false)
}
const fn rep(tag: u32, name: &'static str, ty: Ty) -> Field {
    (tag, name, ty, true)
}

use Ty::*;

fn message(name: &str) -> Option<&'static [Field]> {
    Some(match name {
        "ObjectMeta" => {
            const {
                &[
                    f(1, "name", Str),
                    f(2, "generateName", Str),
                    f(3, "namespace", Str),
                    f(4, "selfLink", Str),
                    f(5, "uid", Str),
                    f(6, "resourceVersion", Str),
                    f(7, "generation", I64),
                    f(8, "creationTimestamp", Time),
                    f(9, "deletionTimestamp", Time),
                    f(10, "deletionGracePeriodSeconds", I64),
                    f(11, "labels", MapStr),
                    f(12, "annotations", MapStr),
                    rep(13, "ownerReferences", Msg("OwnerReference")),
                    rep(14, "finalizers", Str),
                    rep(17, "managedFields", Msg("ManagedFieldsEntry")),
                ]
            }
        }
        "ListMeta" => {
            const {
                &[
                    f(1, "selfLink", Str),
                    f(2, "resourceVersion", Str),
                    f(3, "continue", Str),
                    f(4, "remainingItemCount", I64),
                ]
            }
        }
        "OwnerReference" => {
            const {
                &[
                    f(1, "kind", Str),
                    f(3, "name", Str),
                    f(4, "uid", Str),
                    f(5, "apiVersion", Str),
                    f(6, "controller", Bool),
                    f(7, "blockOwnerDeletion", Bool),
                ]
            }
        }
        "ManagedFieldsEntry" => {
            const {
                &[
                    f(1, "manager", Str),
                    f(2, "operation", Str),
                    f(3, "apiVersion", Str),
                    f(4, "time", Time),
                    f(6, "fieldsType", Str),
                    f(7, "fieldsV1", FieldsV1),
                    f(8, "subresource", Str),
                ]
            }
        }
        "Condition" => {
            const {
                &[
                    f(1, "type", Str),
                    f(2, "status", Str),
                    f(3, "observedGeneration", I64),
                    f(4, "lastTransitionTime", Time),
                    f(5, "reason", Str),
                    f(6, "message", Str),
                ]
            }
        }
        "Status" => {
            const {
                &[
                    f(1, "metadata", Msg("ListMeta")),
                    f(2, "status", Str),
                    f(3, "message", Str),
                    f(4, "reason", Str),
                    f(5, "details", Msg("StatusDetails")),
                    f(6, "code", I32),
                ]
            }
        }
        "StatusDetails" => {
            const {
                &[
                    f(1, "name", Str),
                    f(2, "group", Str),
                    f(3, "kind", Str),
                    rep(4, "causes", Msg("StatusCause")),
                    f(5, "retryAfterSeconds", I32),
                    f(6, "uid", Str),
                ]
            }
        }
        "StatusCause" => {
            const {
                &[
                    f(1, "reason", Str),
                    f(2, "message", Str),
                    f(3, "field", Str),
                ]
            }
        }
        "DeleteOptions" => {
            const {
                &[
                    f(1, "gracePeriodSeconds", I64),
                    f(2, "preconditions", Msg("Preconditions")),
                    f(3, "orphanDependents", Bool),
                    f(4, "propagationPolicy", Str),
                    rep(5, "dryRun", Str),
                ]
            }
        }
        "Preconditions" => const { &[f(1, "uid", Str), f(2, "resourceVersion", Str)] },
        "Namespace" => {
            const {
                &[
                    f(1, "metadata", Msg("ObjectMeta")),
                    f(2, "spec", Msg("NamespaceSpec")),
                    f(3, "status", Msg("NamespaceStatus")),
                ]
            }
        }
        "NamespaceSpec" => const { &[rep(1, "finalizers", Str)] },
        "NamespaceStatus" => {
            const {
                &[
                    f(1, "phase", Str),
                    rep(2, "conditions", Msg("NamespaceCondition")),
                ]
            }
        }
        "NamespaceCondition" => {
            const {
                &[
                    f(1, "type", Str),
                    f(2, "status", Str),
                    f(4, "lastTransitionTime", Time),
                    f(5, "reason", Str),
                    f(6, "message", Str),
                ]
            }
        }
        "ConfigMap" => {
            const {
                &[
                    f(1, "metadata", Msg("ObjectMeta")),
                    f(2, "data", MapStr),
                    f(3, "binaryData", MapBytes),
                    f(4, "immutable", Bool),
                ]
            }
        }
        "Service" => {
            const {
                &[
                    f(1, "metadata", Msg("ObjectMeta")),
                    f(2, "spec", Msg("ServiceSpec")),
                    f(3, "status", Msg("ServiceStatus")),
                ]
            }
        }
        "ServiceSpec" => {
            const {
                &[
                    rep(1, "ports", Msg("ServicePort")),
                    f(2, "selector", MapStr),
                    f(3, "clusterIP", Str),
                    f(4, "type", Str),
                    rep(5, "externalIPs", Str),
                    f(7, "sessionAffinity", Str),
                    f(8, "loadBalancerIP", Str),
                    rep(9, "loadBalancerSourceRanges", Str),
                    f(10, "externalName", Str),
                    f(11, "externalTrafficPolicy", Str),
                    f(12, "healthCheckNodePort", I32),
                    f(13, "publishNotReadyAddresses", Bool),
                    f(14, "sessionAffinityConfig", Msg("SessionAffinityConfig")),
                    f(17, "ipFamilyPolicy", Str),
                    rep(18, "clusterIPs", Str),
                    rep(19, "ipFamilies", Str),
                    f(20, "allocateLoadBalancerNodePorts", Bool),
                    f(21, "loadBalancerClass", Str),
                    f(22, "internalTrafficPolicy", Str),
                    f(23, "trafficDistribution", Str),
                ]
            }
        }
        "ServicePort" => {
            const {
                &[
                    f(1, "name", Str),
                    f(2, "protocol", Str),
                    f(3, "port", I32),
                    f(4, "targetPort", IntOrStr),
                    f(5, "nodePort", I32),
                    f(6, "appProtocol", Str),
                ]
            }
        }
        "SessionAffinityConfig" => const { &[f(1, "clientIP", Msg("ClientIPConfig"))] },
        "ClientIPConfig" => const { &[f(1, "timeoutSeconds", I32)] },
        "ServiceStatus" => {
            const {
                &[
                    f(1, "loadBalancer", Msg("LoadBalancerStatus")),
                    rep(2, "conditions", Msg("Condition")),
                ]
            }
        }
        "LoadBalancerStatus" => const { &[rep(1, "ingress", Msg("LoadBalancerIngress"))] },
        "LoadBalancerIngress" => {
            const {
                &[
                    f(1, "ip", Str),
                    f(2, "hostname", Str),
                    f(3, "ipMode", Str),
                    rep(4, "ports", Msg("PortStatus")),
                ]
            }
        }
        "PortStatus" => const { &[f(1, "port", I32), f(2, "protocol", Str), f(3, "error", Str)] },
        "NamespaceList" => {
            const {
                &[
                    f(1, "metadata", Msg("ListMeta")),
                    rep(2, "items", Msg("Namespace")),
                ]
            }
        }
        "ConfigMapList" => {
            const {
                &[
                    f(1, "metadata", Msg("ListMeta")),
                    rep(2, "items", Msg("ConfigMap")),
                ]
            }
        }
        "ServiceList" => {
            const {
                &[
                    f(1, "metadata", Msg("ListMeta")),
                    rep(2, "items", Msg("Service")),
                ]
            }
        }
        _ => return None,
    })
}

// ---- wire format ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, tag: u32, wire: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, tag: u32, b: &[u8]) {
    put_key(out, tag, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.pos >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = (key >> 3) as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => {
                let n = self.varint()? as usize;
                let end = self.pos.checked_add(n).filter(|e| *e <= self.b.len());
                let end = end.ok_or("truncated field")?;
                let s = &self.b[self.pos..end];
                self.pos = end;
                Wire::Len(s)
            }
            1 => {
                self.pos += 8;
                Wire::Fixed
            }
            5 => {
                self.pos += 4;
                Wire::Fixed
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((tag, wire)))
    }
}

// ---- decode: protobuf → JSON ----

fn decode_message(name: &str, b: &[u8]) -> Result<Value, String> {
    let fields = message(name).ok_or_else(|| format!("no protobuf codec for {name}"))?;
    let mut out = Map::new();
    let mut r = Reader { b, pos: 0 };
    while let Some((tag, wire)) = r.next()? {
        let Some(&(_, jname, ty, repeated)) = fields.iter().find(|f| f.0 == tag) else {
            continue;
        };
        let v = decode_value(ty, &wire)?;
        match ty {
            MapStr | MapBytes => {
                let (k, val) = v;
                let m = out.entry(jname).or_insert_with(|| json!({}));
                m[k.as_str().unwrap_or("")] = val;
            }
            _ if repeated => {
                let a = out.entry(jname).or_insert_with(|| json!([]));
                if let Some(a) = a.as_array_mut() {
                    a.push(v.1);
                }
            }
            // Go writes zero values of non-pointer fields; its JSON omits them
            // (omitempty), and so does the JSON this decodes to
            _ if matches!(&v.1, Value::String(s) if s.is_empty())
                || v.1 == json!(0)
                || v.1 == json!(false) => {}
            _ => {
                out.insert(jname.into(), v.1);
            }
        }
    }
    Ok(Value::Object(out))
}

/// One field's value; maps give (key, value).
fn decode_value(ty: Ty, wire: &Wire) -> Result<(Value, Value), String> {
    let bytes = || match wire {
        Wire::Len(b) => Ok(*b),
        _ => Err("expected a length-delimited field".to_string()),
    };
    let int = || match wire {
        Wire::Varint(v) => Ok(*v),
        _ => Err("expected a varint".to_string()),
    };
    Ok((
        Value::Null,
        match ty {
            Str => json!(String::from_utf8_lossy(bytes()?)),
            I64 => json!(int()? as i64),
            I32 => json!(int()? as i64 as i32),
            Bool => json!(int()? != 0),
            Msg(name) => decode_message(name, bytes()?)?,
            Time => {
                let mut r = Reader {
                    b: bytes()?,
                    pos: 0,
                };
                let mut secs = 0u64;
                while let Some((tag, w)) = r.next()? {
                    if let (1, Wire::Varint(v)) = (tag, w) {
                        secs = v;
                    }
                }
                json!(crate::logfmt::rfc3339(secs))
            }
            IntOrStr => {
                let mut r = Reader {
                    b: bytes()?,
                    pos: 0,
                };
                let (mut kind, mut i, mut s) = (0u64, 0i64, String::new());
                while let Some((tag, w)) = r.next()? {
                    match (tag, w) {
                        (1, Wire::Varint(v)) => kind = v,
                        (2, Wire::Varint(v)) => i = v as i64 as i32 as i64,
                        (3, Wire::Len(b)) => s = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                }
                if kind == 1 {
                    json!(s)
                } else {
                    json!(i)
                }
            }
            FieldsV1 => {
                let mut r = Reader {
                    b: bytes()?,
                    pos: 0,
                };
                let mut v = json!({});
                while let Some((tag, w)) = r.next()? {
                    if let (1, Wire::Len(b)) = (tag, w) {
                        v = serde_json::from_slice(b).unwrap_or(json!({}));
                    }
                }
                v
            }
            MapStr | MapBytes => {
                let mut r = Reader {
                    b: bytes()?,
                    pos: 0,
                };
                let (mut k, mut val) = (String::new(), Value::String(String::new()));
                while let Some((tag, w)) = r.next()? {
                    match (tag, w) {
                        (1, Wire::Len(b)) => k = String::from_utf8_lossy(b).into_owned(),
                        (2, Wire::Len(b)) if matches!(ty, MapBytes) => {
                            val = json!(crate::pki::base64(b))
                        }
                        (2, Wire::Len(b)) => val = json!(String::from_utf8_lossy(b)),
                        _ => {}
                    }
                }
                return Ok((json!(k), val));
            }
        },
    ))
}

// ---- encode: JSON → protobuf ----

fn encode_message(name: &str, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let fields = message(name).ok_or_else(|| format!("no protobuf codec for {name}"))?;
    for &(tag, jname, ty, repeated) in fields {
        let Some(fv) = v.get(jname).filter(|x| !x.is_null()) else {
            continue;
        };
        match ty {
            MapStr | MapBytes => {
                for (k, val) in fv.as_object().into_iter().flatten() {
                    let mut entry = Vec::new();
                    put_bytes(&mut entry, 1, k.as_bytes());
                    let raw = match ty {
                        MapBytes => base64_decode(val.as_str().unwrap_or(""))?,
                        _ => val.as_str().unwrap_or("").as_bytes().to_vec(),
                    };
                    put_bytes(&mut entry, 2, &raw);
                    put_bytes(out, tag, &entry);
                }
            }
            _ if repeated => {
                for item in fv.as_array().into_iter().flatten() {
                    encode_value(ty, tag, item, out)?;
                }
            }
            _ => encode_value(ty, tag, fv, out)?,
        }
    }
    Ok(())
}

fn encode_value(ty: Ty, tag: u32, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match ty {
        Str => put_bytes(out, tag, v.as_str().unwrap_or("").as_bytes()),
        I64 | I32 => {
            put_key(out, tag, 0);
            put_varint(out, v.as_i64().unwrap_or(0) as u64);
        }
        Bool => {
            put_key(out, tag, 0);
            put_varint(out, u64::from(v.as_bool().unwrap_or(false)));
        }
        Msg(name) => {
            let mut inner = Vec::new();
            encode_message(name, v, &mut inner)?;
            put_bytes(out, tag, &inner);
        }
        Time => {
            let secs = v
                .as_str()
                .and_then(crate::table::parse_rfc3339)
                .unwrap_or(0);
            let mut inner = Vec::new();
            put_key(&mut inner, 1, 0);
            put_varint(&mut inner, secs);
            put_bytes(out, tag, &inner);
        }
        IntOrStr => {
            let mut inner = Vec::new();
            match v {
                Value::String(s) => {
                    put_key(&mut inner, 1, 0);
                    put_varint(&mut inner, 1);
                    put_bytes(&mut inner, 3, s.as_bytes());
                }
                _ => {
                    put_key(&mut inner, 1, 0);
                    put_varint(&mut inner, 0);
                    put_key(&mut inner, 2, 0);
                    put_varint(&mut inner, v.as_i64().unwrap_or(0) as u64);
                }
            }
            put_bytes(out, tag, &inner);
        }
        FieldsV1 => {
            let mut inner = Vec::new();
            put_bytes(&mut inner, 1, v.to_string().as_bytes());
            put_bytes(out, tag, &inner);
        }
        MapStr | MapBytes => unreachable!("maps are encoded by encode_message"),
    }
    Ok(())
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let val = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("invalid base64 character {:?}", c as char)),
        } as u32)
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Ok(out)
}

// ---- the envelope ----

/// The protobuf encoding of `value` (an object of a served kind, its list, or a
/// Status) in the `k8s\0` + `runtime.Unknown` envelope; None for what the codec
/// does not know (Tables, Nodes), which is then answered as JSON.
pub fn encode(value: &Value) -> Option<Vec<u8>> {
    let kind = value["kind"].as_str()?;
    message(kind)?;
    let mut raw = Vec::new();
    encode_message(kind, value, &mut raw).ok()?;
    let mut type_meta = Vec::new();
    put_bytes(
        &mut type_meta,
        1,
        value["apiVersion"].as_str().unwrap_or("v1").as_bytes(),
    );
    put_bytes(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    put_bytes(&mut out, 1, &type_meta);
    put_bytes(&mut out, 2, &raw);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Some(out)
}

/// A protobuf request body as JSON; the kind comes from the envelope's typeMeta
/// (`url_kind` when it has none).
pub fn decode(body: &[u8], url_kind: Option<&str>) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or("the protobuf body does not start with the k8s magic")?;
    let mut r = Reader { b: rest, pos: 0 };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((tag, w)) = r.next()? {
        match (tag, w) {
            (1, Wire::Len(tm)) => {
                let mut t = Reader { b: tm, pos: 0 };
                while let Some((tag, w)) = t.next()? {
                    match (tag, w) {
                        (1, Wire::Len(b)) => api_version = String::from_utf8_lossy(b).into(),
                        (2, Wire::Len(b)) => kind = String::from_utf8_lossy(b).into(),
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(b)) => raw = b,
            _ => {}
        }
    }
    if kind.is_empty() {
        kind = url_kind.unwrap_or_default().to_string();
    }
    let mut v = decode_message(&kind, raw)?;
    v["kind"] = json!(kind);
    v["apiVersion"] = json!(if api_version.is_empty() {
        "v1".into()
    } else {
        api_version
    });
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_service() {
        let svc = json!({"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"},
                         "creationTimestamp": "2026-01-02T03:04:05Z", "generation": 2},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "clusterIPs": ["10.43.0.5"],
                     "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080, "protocol": "TCP"},
                               {"port": 81, "targetPort": 8081}]},
            "status": {"loadBalancer": {}}});
        let bytes = encode(&svc).unwrap();
        assert!(bytes.starts_with(b"k8s\0"));
        assert_eq!(decode(&bytes, None).unwrap(), svc);
    }

    #[test]
    fn round_trips_a_config_map_with_binary_data() {
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"},
                        "data": {"a": "b"}, "binaryData": {"bin": "AAEC"}, "immutable": true});
        assert_eq!(decode(&encode(&cm).unwrap(), None).unwrap(), cm);
    }

    #[test]
    fn decodes_what_a_go_client_sends() {
        // k8s\0 + Unknown{typeMeta{v1, Namespace}, raw: Namespace{metadata{name: x1}, spec{}, status{}}}
        let raw: &[u8] = &[0x0a, 0x04, 0x0a, 0x02, b'x', b'1', 0x12, 0x00, 0x1a, 0x00];
        let mut body = b"k8s\0".to_vec();
        put_bytes(
            &mut body,
            1,
            &[
                0x0a, 0x02, b'v', b'1', 0x12, 0x09, b'N', b'a', b'm', b'e', b's', b'p', b'a', b'c',
                b'e',
            ],
        );
        put_bytes(&mut body, 2, raw);
        let v = decode(&body, None).unwrap();
        assert_eq!(v["metadata"]["name"], "x1");
        assert_eq!(v["kind"], "Namespace");
    }
}
