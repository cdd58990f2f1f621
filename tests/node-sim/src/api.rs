//! The simulated Kubernetes API: HTTPS on the node's listen port, client-certificate
//! authentication, JSON bodies (protobuf too, for the kinds served), Status objects
//! for errors, server-side Tables for `kubectl get`, the OpenAPI documents kubectl
//! validates with, and the three PATCH formats — what kubectl, client-go and
//! kube-rs expect from a real API server for the kinds modelled in `state`.
//! `/v1-k3s-sim/register` is the join endpoint, `/v1-k3s-sim/nodeports` the
//! node-port feed nodes follow and `/v1-k3s-sim/peer/*` the replication between
//! servers (token auth, like k3s's `/v1-k3s/`). On a server of a replicated
//! cluster, writes go to the leader (`cluster.rs`) and reads are local.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::cluster::Cluster;
use crate::pki::{CaPem, Pki};
use crate::state::{kind_of, ApiError, NodeRecord, Selectors, State, KINDS};
use crate::{openapi, patch, protobuf, table};

pub struct Server {
    pub state: Arc<State>,
    pub ca: CaPem,
    pub advertise: String,
    /// this server's own node: always Ready while it answers
    pub node_name: String,
    /// the replicated datastore this server is a member of (`cluster.rs`):
    /// k3s servers and kind control planes alike
    pub cluster: Arc<Cluster>,
}

type Resp = Response<Full<Bytes>>;

/// How long a deleted namespace's objects outlive it (the namespace controller's
/// work in a real cluster).
const NAMESPACE_CLEANUP_DELAY: Duration = Duration::from_secs(1);

pub fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<_> = rustls_pemfile::certs(&mut pki.serving_cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut pki.serving_key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("no serving key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut pki.ca.cert_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    // Unauthenticated clients get through the handshake so that they receive a 401
    // Status, as from a real API server, rather than a TLS alert.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| e.to_string())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, server: Arc<Server>) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let authenticated = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(handle(&server, authenticated, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn respond(code: StatusCode, body: Value) -> Resp {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts")
}

fn text(code: StatusCode, body: &'static str) -> Resp {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts")
}

/// A `Status` object as the API server returns for failures.
fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    body
}

fn error_status(e: &ApiError) -> (StatusCode, Value) {
    match e {
        ApiError::NotFound { resource, name } => (
            StatusCode::NOT_FOUND,
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{resource} \"{name}\" not found"),
                Some(json!({"name": name, "kind": resource})),
            ),
        ),
        ApiError::AlreadyExists { resource, name } => (
            StatusCode::CONFLICT,
            status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{resource} \"{name}\" already exists"),
                Some(json!({"name": name, "kind": resource})),
            ),
        ),
        ApiError::Conflict {
            resource,
            name,
            message,
        } => (
            StatusCode::CONFLICT,
            status(
                StatusCode::CONFLICT,
                "Conflict",
                message,
                Some(json!({"name": name, "kind": resource})),
            ),
        ),
        ApiError::Invalid {
            kind,
            name,
            message,
        } => {
            let field = message.split(':').next().unwrap_or("");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("{kind} \"{name}\" is invalid: {message}"),
                    Some(json!({"name": name, "kind": kind,
                            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]})),
                ),
            )
        }
        ApiError::BadRequest(m) => (
            StatusCode::BAD_REQUEST,
            status(StatusCode::BAD_REQUEST, "BadRequest", m, None),
        ),
        ApiError::Forbidden {
            resource,
            name,
            message,
        } => (
            StatusCode::FORBIDDEN,
            status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                message,
                Some(json!({"name": name, "kind": resource})),
            ),
        ),
        ApiError::MethodNotAllowed(m) => (
            StatusCode::METHOD_NOT_ALLOWED,
            status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", m, None),
        ),
    }
}

fn not_found_path() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ),
    )
}

fn method_not_allowed(method: &Method, path: &str) -> (StatusCode, Value) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
            Some(json!({})),
        ),
    )
}

/// `k=v&…` with percent-decoding.
fn query_params(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the request asked for and how its body is encoded.
struct Req {
    method: Method,
    path: String,
    raw_query: String,
    query: Vec<(String, String)>,
    accept: String,
    content_type: String,
    body: Bytes,
}

impl Req {
    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(qk, _)| qk == k)
            .map(|(_, v)| v.as_str())
    }
    fn wants_table(&self) -> bool {
        self.accept.contains("as=Table")
    }
    /// Protobuf only when it is the client's first choice (kubectl and client-go
    /// list JSON after it as a fallback).
    fn wants_protobuf(&self) -> bool {
        self.accept
            .split(',')
            .next()
            .is_some_and(|a| a.trim().starts_with(protobuf::MEDIA_TYPE))
    }
}

async fn handle(server: &Server, authenticated: bool, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query = query_params(&raw_query);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let accept = header("accept");
    let content_type = header("content-type");
    let token = header("x-k3s-sim-token");
    let forwarded = !header(FORWARDED).is_empty();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if crate::env("SIM_LOG_REQUESTS").as_deref() == Some("1") {
        crate::logfmt::info(&format!(
            "request {method} {path}?{} accept={accept:?} content-type={content_type:?}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        ));
    }
    let r = Req {
        method,
        path,
        raw_query,
        query,
        accept,
        content_type,
        body,
    };

    if r.path.starts_with("/v1-k3s-sim/") {
        if token != server.state.token {
            return respond(
                StatusCode::UNAUTHORIZED,
                status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "node token rejected",
                    None,
                ),
            );
        }
    } else if !authenticated {
        return respond(
            StatusCode::UNAUTHORIZED,
            status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized",
                None,
            ),
        );
    }
    let write = is_write(&r);
    let cluster = &server.cluster;
    if write {
        if forwarded {
            // a server that has not caught up yet must not lead: the sender
            // tries the next member
            if !cluster.synced() {
                return not_leader();
            }
        } else if let Some(resp) = route_write(cluster, &r, &token).await {
            return resp;
        }
    }
    let resp = dispatch(server, &r).await;
    if write && resp.status().is_success() {
        cluster.replicate().await;
    }
    resp
}

/// A request that changes the state: it goes to the leader.
fn is_write(r: &Req) -> bool {
    let api = r.path.starts_with("/api/v1/");
    match r.method {
        Method::POST => api || r.path == "/v1-k3s-sim/register",
        Method::PUT | Method::PATCH | Method::DELETE => api,
        _ => false,
    }
}

/// Marks a write forwarded by a member to the one it takes for the leader.
const FORWARDED: &str = "X-K3s-Sim-Forwarded";
/// On a 503: this server does not take writes yet (try the next member).
const NOT_LEADER: &str = "x-k3s-sim-not-leader";

fn not_leader() -> Resp {
    let mut resp = respond(
        StatusCode::SERVICE_UNAVAILABLE,
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "this server is catching up with the cluster",
            None,
        ),
    );
    resp.headers_mut()
        .insert(NOT_LEADER, hyper::header::HeaderValue::from_static("1"));
    resp
}

/// Sends a write to the first member, in the members' order, that is up and in
/// sync; None when that is this server (it applies the write itself).
async fn route_write(cluster: &Cluster, r: &Req, token: &str) -> Option<Resp> {
    let members = cluster.members();
    if members.is_empty() {
        return None;
    }
    let mut why = Vec::new();
    for m in members {
        if m.name == cluster.me {
            if cluster.synced() {
                return None;
            }
            why.push(format!("{}: catching up", m.name));
            continue;
        }
        match forward(&m.url, cluster, r, token).await {
            Ok(resp) => return Some(resp),
            Err(e) => why.push(format!("{}: {e}", m.url)),
        }
    }
    Some(respond(
        StatusCode::SERVICE_UNAVAILABLE,
        status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!(
                "the cluster datastore is unavailable: no server can take writes ({})",
                why.join("; ")
            ),
            None,
        ),
    ))
}

/// Answers a request from this server's own state.
async fn dispatch(server: &Server, r: &Req) -> Resp {
    if r.path.starts_with("/v1-k3s-sim/") {
        return match (&r.method, r.path.as_str()) {
            (&Method::POST, "/v1-k3s-sim/register") => register(server, &r.body),
            (&Method::GET, "/v1-k3s-sim/nodeports") => node_ports(server, r).await,
            (&Method::GET, "/v1-k3s-sim/peer/state") => {
                respond(StatusCode::OK, server.state.snapshot())
            }
            (&Method::POST, "/v1-k3s-sim/peer/state") => {
                let taken = serde_json::from_slice::<Value>(&r.body)
                    .is_ok_and(|snapshot| server.state.install(&snapshot));
                respond(StatusCode::OK, json!({"installed": taken}))
            }
            (&Method::POST, "/v1-k3s-sim/peer/heartbeat") => {
                if let Ok(beat) = serde_json::from_slice::<Value>(&r.body) {
                    server.cluster.take_heartbeat(&beat);
                }
                respond(StatusCode::OK, server.cluster.heartbeat_body())
            }
            _ => {
                let (c, v) = not_found_path();
                respond(c, v)
            }
        };
    }
    let segs: Vec<String> = r
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (&r.method, segs.as_slice()) {
        (&Method::GET, ["version"]) => respond(
            StatusCode::OK,
            json!({"major": "1", "minor": "31", "gitVersion": crate::state::version(), "gitCommit": "0000000000000000000000000000000000000000",
                   "gitTreeState": "clean", "buildDate": "2024-12-01T00:00:00Z", "goVersion": "go1.22.9",
                   "compiler": "gc", "platform": "linux/amd64"}),
        ),
        (&Method::GET, ["readyz" | "livez" | "healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["api"]) => respond(
            StatusCode::OK,
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server.advertise}]}),
        ),
        (&Method::GET, ["apis"]) => respond(
            StatusCode::OK,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        (&Method::GET, ["api", "v1"]) => respond(StatusCode::OK, resource_list()),
        (&Method::GET, ["openapi", "v2"]) => {
            if r.accept.contains("protobuf") && !r.accept.contains("json") {
                let (c, v) = not_found_path();
                return respond(c, v);
            }
            respond(StatusCode::OK, openapi::v2())
        }
        (&Method::GET, ["openapi", "v3"]) => respond(StatusCode::OK, openapi::v3_index()),
        (&Method::GET, ["openapi", "v3", "api", "v1"]) => {
            respond(StatusCode::OK, openapi::v3_core())
        }
        (_, ["api", "v1", rest @ ..]) => {
            let (code, value) = resources(server, r, rest);
            encode(r, code, value)
        }
        (_, ["version" | "api" | "apis" | "readyz" | "livez" | "healthz"]) => {
            let (c, v) = method_not_allowed(&r.method, &r.path);
            respond(c, v)
        }
        _ => {
            let (c, v) = not_found_path();
            respond(c, v)
        }
    }
}

/// Answers in the encoding the client asked for: protobuf when it is its first
/// choice and the kind is one the codec knows, else JSON.
fn encode(r: &Req, code: StatusCode, value: Value) -> Resp {
    if r.wants_protobuf() {
        if let Some(bytes) = protobuf::encode(&value) {
            return Response::builder()
                .status(code)
                .header("content-type", protobuf::MEDIA_TYPE)
                .body(Full::new(Bytes::from(bytes)))
                .expect("static response parts");
        }
    }
    respond(code, value)
}

fn resource_list() -> Value {
    let resources: Vec<Value> = KINDS
        .iter()
        .map(|k| {
            json!({"name": k.resource, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                   "kind": k.kind, "verbs": k.verbs, "shortNames": k.short_names,
                   "storageVersionHash": ""})
        })
        .collect();
    json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})
}

/// `/api/v1/…`: (status code, body).
fn resources(server: &Server, r: &Req, rest: &[&str]) -> (StatusCode, Value) {
    // /namespaces/{ns}/{resource}[/{name}] or /{resource}[/{name}]
    let (ns, resource, name) = match rest {
        ["namespaces", ns, resource] => (Some(*ns), *resource, None),
        ["namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name)),
        [resource] => (None, *resource, None),
        [resource, name] => (None, *resource, Some(*name)),
        _ => {
            return not_found_path();
        }
    };
    let Some(kind) = kind_of(resource) else {
        return not_found_path();
    };
    if ns.is_some() && !kind.namespaced {
        return not_found_path();
    }
    let state = &server.state;
    let local = Some(server.node_name.as_str());
    let namespace = ns.unwrap_or("");
    if kind.namespaced && name.is_some() && ns.is_none() {
        return not_found_path();
    }
    let watch = r.param("watch").is_some_and(|v| v == "true" || v == "1");
    if watch {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "watch is not supported by the node simulator: list instead",
                Some(json!({"kind": resource})),
            ),
        );
    }
    let result: Result<(StatusCode, Value), ApiError> = (|| match (&r.method, name) {
        (&Method::GET, None) => {
            let sel = Selectors::parse(
                r.param("fieldSelector").unwrap_or(""),
                r.param("labelSelector").unwrap_or(""),
            )?;
            let list = state.list(
                resource,
                if kind.namespaced { ns } else { None },
                &sel,
                local,
            );
            if r.wants_table() {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let rv = list["metadata"]["resourceVersion"].as_str();
                return Ok((
                    StatusCode::OK,
                    table::table(
                        kind.kind,
                        &items,
                        rv,
                        r.param("includeObject").unwrap_or(""),
                    ),
                ));
            }
            Ok((StatusCode::OK, list))
        }
        (&Method::GET, Some(name)) => {
            let obj = state.get(resource, namespace, name, local)?;
            if r.wants_table() {
                return Ok((
                    StatusCode::OK,
                    table::table(
                        kind.kind,
                        &[obj],
                        None,
                        r.param("includeObject").unwrap_or(""),
                    ),
                ));
            }
            Ok((StatusCode::OK, obj))
        }
        (&Method::POST, None) => {
            let body = decode_body(r, Some(kind.kind))?;
            validate(r, kind.kind, &body)?;
            if r.param("dryRun").is_some() {
                return Ok((StatusCode::CREATED, body));
            }
            Ok((
                StatusCode::CREATED,
                state.create(resource, namespace, &body)?,
            ))
        }
        (&Method::PUT, Some(name)) => {
            let body = decode_body(r, Some(kind.kind))?;
            validate(r, kind.kind, &body)?;
            Ok((
                StatusCode::OK,
                state.replace(resource, namespace, name, &body)?,
            ))
        }
        (&Method::PATCH, Some(name)) => {
            let mut obj = state.get(resource, namespace, name, local)?;
            let p = decode_body(r, None)?;
            let ct = r.content_type.split(';').next().unwrap_or("").trim();
            match ct {
                "application/merge-patch+json" => patch::merge(&mut obj, &p),
                "application/strategic-merge-patch+json" => {
                    patch::strategic(&mut obj, &p).map_err(ApiError::BadRequest)?
                }
                "application/json-patch+json" => {
                    patch::json_patch(&mut obj, &p).map_err(|e| {
                        ApiError::Invalid {
                            kind: kind.kind.into(),
                            name: name.into(),
                            message: e,
                        }
                    })?
                }
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    return Err(ApiError::BadRequest(
                        "server-side apply is not supported by the node simulator; use client-side apply (kubectl apply without --server-side)".into(),
                    ))
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unsupported patch content type {other:?}"
                    )))
                }
            }
            validate(r, kind.kind, &obj)?;
            // a patch never conflicts on the resourceVersion it carried back
            if p["metadata"]["resourceVersion"].is_null() {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
            }
            Ok((
                StatusCode::OK,
                state.replace(resource, namespace, name, &obj)?,
            ))
        }
        (&Method::DELETE, Some(name)) => {
            let obj = state.delete(resource, namespace, name)?;
            if resource == "namespaces" {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (state, ns) = (state.clone(), name.to_string());
                let cluster = server.cluster.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(NAMESPACE_CLEANUP_DELAY).await;
                    state.purge_namespace(&ns, rv);
                    cluster.replicate().await;
                });
                // a namespace answers with itself, Terminating; other objects
                // with a Success Status naming what went
                return Ok((StatusCode::OK, obj));
            }
            Ok((
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                       "details": {"name": name, "kind": resource, "uid": obj["metadata"]["uid"]}}),
            ))
        }
        (m, _) => {
            let (c, v) = method_not_allowed(m, &r.path);
            Ok((c, v))
        }
    })();
    result.unwrap_or_else(|e| error_status(&e))
}

/// A request body as JSON: JSON as sent, protobuf decoded for the kinds known.
fn decode_body(r: &Req, kind: Option<&str>) -> Result<Value, ApiError> {
    if r.content_type.starts_with(protobuf::MEDIA_TYPE) {
        return protobuf::decode(&r.body, kind).map_err(ApiError::BadRequest);
    }
    let ct = r.content_type.split(';').next().unwrap_or("").trim();
    if !(ct.is_empty() || ct.ends_with("json")) {
        return Err(ApiError::BadRequest(format!("the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {ct:?})")));
    }
    serde_json::from_slice(&r.body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

/// `fieldValidation=Strict`: unknown fields are a 400, with the API server's words.
fn validate(r: &Req, kind: &str, body: &Value) -> Result<(), ApiError> {
    let unknown = openapi::unknown_fields(kind, body);
    if unknown.is_empty() {
        return Ok(());
    }
    match r.param("fieldValidation").unwrap_or("Warn") {
        "Strict" => {
            let list = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            Err(ApiError::BadRequest(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: strict decoding error: {list}"
            )))
        }
        _ => Ok(()),
    }
}

/// Passes a write on to another member and its answer back; Err when that
/// member cannot take it (unreachable, or catching up).
async fn forward(url: &str, cluster: &Cluster, r: &Req, token: &str) -> Result<Resp, String> {
    let target = if r.raw_query.is_empty() {
        r.path.clone()
    } else {
        format!("{}?{}", r.path, r.raw_query)
    };
    let mut headers = vec![("Accept", r.accept.as_str()), (FORWARDED, "1")];
    if !r.content_type.is_empty() {
        headers.push(("Content-Type", r.content_type.as_str()));
    }
    if !token.is_empty() {
        headers.push(("X-K3s-Sim-Token", token));
    }
    let (code, resp_headers, body) = crate::join::https(
        url,
        r.method.as_str(),
        &target,
        &headers,
        &r.body,
        Some((&cluster.client_cert, &cluster.client_key)),
        Duration::from_secs(30),
    )
    .await
    .map_err(|(crate::join::JoinError::Unreachable(e) | crate::join::JoinError::Rejected(e))| e)?;
    let header = |name: &str| {
        resp_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if code == 503 && header(NOT_LEADER).is_some() {
        return Err("catching up".into());
    }
    Ok(Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY))
        .header(
            "content-type",
            header("content-type").unwrap_or_else(|| "application/json".into()),
        )
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts"))
}

fn register(server: &Server, body: &[u8]) -> Resp {
    let Ok(node) = serde_json::from_slice::<NodeRecord>(body) else {
        return respond(
            StatusCode::BAD_REQUEST,
            status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "invalid node registration",
                None,
            ),
        );
    };
    server.state.register(node);
    // Joining servers need the cluster CA, as k3s hands it out from its
    // datastore, and the state itself (with this registration in it) to serve.
    respond(
        StatusCode::OK,
        json!({"caCert": server.ca.cert_pem, "caKey": server.ca.key_pem,
               "state": server.state.snapshot()}),
    )
}

/// Long poll: `?after=<generation>&node=<name>` answers as soon as the node ports
/// differ from that generation, or after 20 s (a third of the node grace period
/// when that is shorter) with the same ones. Each poll is also the node's
/// heartbeat.
async fn node_ports(server: &Server, r: &Req) -> Resp {
    let after: u64 = r.param("after").and_then(|v| v.parse().ok()).unwrap_or(0);
    if let Some(node) = r.param("node") {
        server.state.heard_from(node);
    }
    let mut rx = server.state.ports();
    let _ = tokio::time::timeout(
        Duration::from_secs(20).min(crate::state::node_grace() / 3),
        rx.wait_for(|(generation, _)| *generation != after),
    )
    .await;
    let (generation, ports) = rx.borrow().clone();
    // the servers an agent may fail over to
    let servers: Vec<String> = server.state.members().into_iter().map(|m| m.url).collect();
    respond(
        StatusCode::OK,
        json!({"generation": generation, "ports": ports, "servers": servers}),
    )
}
