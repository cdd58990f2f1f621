//! The simulated Kubernetes API: HTTPS on the node's listen port, client-certificate
//! authentication, JSON bodies, Status objects for errors — what kubectl, client-go
//! and kube-rs expect from a real API server for the resources modelled in `state`.
//! `/v1-k3s-sim/register` is the join endpoint (token auth, like k3s's `/v1-k3s/`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pki::{CaPem, Pki};
use crate::state::{NodeRecord, State};

pub struct Server {
    pub state: Arc<State>,
    pub ca: CaPem,
    pub advertise: String,
}

type Resp = Response<Full<Bytes>>;

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
fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    respond(code, body)
}

fn not_found(kind: &str, name: &str) -> Resp {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

fn resource(name: &str, namespaced: bool, kind: &str, verbs: &[&str], short: &[&str]) -> Value {
    json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": namespaced, "kind": kind,
           "verbs": verbs, "shortNames": short})
}

async fn handle(server: &Server, authenticated: bool, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let protobuf = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("protobuf"));
    let token = req
        .headers()
        .get("x-k3s-sim-token")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };

    if path == "/v1-k3s-sim/register" && method == Method::POST {
        return register(server, token.as_deref(), &body);
    }
    if !authenticated {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    if protobuf {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
            None,
        );
    }
    if query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1")
    {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "watch is not supported by the node simulator",
            None,
        );
    }

    let state = &server.state;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["version"]) => respond(
            StatusCode::OK,
            json!({"major": "1", "minor": "31", "gitVersion": crate::state::version(), "gitCommit": "0000000000000000000000000000000000000000",
                   "gitTreeState": "clean", "buildDate": "2024-12-01T00:00:00Z", "goVersion": "go1.22.9",
                   "compiler": "gc", "platform": "linux/amd64"}),
        ),
        (&Method::GET, ["readyz"]) | (&Method::GET, ["livez"]) | (&Method::GET, ["healthz"]) => {
            text(StatusCode::OK, "ok")
        }
        (&Method::GET, ["api"]) => respond(
            StatusCode::OK,
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server.advertise}]}),
        ),
        (&Method::GET, ["apis"]) => respond(
            StatusCode::OK,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        (&Method::GET, ["api", "v1"]) => respond(
            StatusCode::OK,
            json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                resource("nodes", false, "Node", &["get", "list"], &["no"]),
                resource("namespaces", false, "Namespace", &["create", "delete", "get", "list"], &["ns"]),
                resource("configmaps", true, "ConfigMap", &["get", "list"], &["cm"]),
            ]}),
        ),
        (&Method::GET, ["api", "v1", "nodes"]) => respond(StatusCode::OK, state.list_nodes()),
        (&Method::GET, ["api", "v1", "nodes", name]) => match state.get_node(name) {
            Some(n) => respond(StatusCode::OK, n),
            None => not_found("nodes", name),
        },
        (&Method::GET, ["api", "v1", "namespaces"]) => {
            respond(StatusCode::OK, state.list_namespaces())
        }
        (&Method::POST, ["api", "v1", "namespaces"]) => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the request body is not valid JSON",
                    None,
                );
            };
            match state.create_namespace(&v) {
                Ok(obj) => respond(StatusCode::CREATED, obj),
                Err(None) => {
                    let name = v["metadata"]["name"].as_str().unwrap_or_default();
                    status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("namespaces \"{name}\" already exists"),
                        Some(json!({"name": name, "kind": "namespaces"})),
                    )
                }
                Err(Some(msg)) => status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &msg, None),
            }
        }
        (&Method::GET, ["api", "v1", "namespaces", name]) => match state.get_namespace(name) {
            Some(n) => respond(StatusCode::OK, n),
            None => not_found("namespaces", name),
        },
        (&Method::DELETE, ["api", "v1", "namespaces", name]) => {
            match state.delete_namespace(name) {
                Some(n) => respond(StatusCode::OK, n),
                None => not_found("namespaces", name),
            }
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "configmaps"]) => {
            if !state.namespace_exists(ns) {
                return not_found("namespaces", ns);
            }
            respond(StatusCode::OK, state.list_configmaps(ns))
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "configmaps", name]) => {
            match state.get_configmap(ns, name) {
                Some(cm) => respond(StatusCode::OK, cm),
                None => not_found("configmaps", name),
            }
        }
        (_, ["api", "v1", ..]) | (_, ["version"]) | (_, ["api"]) | (_, ["apis"]) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            ),
            None,
        ),
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ),
    }
}

fn register(server: &Server, token: Option<&str>, body: &[u8]) -> Resp {
    if token != Some(server.state.token.as_str()) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "node token rejected",
            None,
        );
    }
    let Ok(node) = serde_json::from_slice::<NodeRecord>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "invalid node registration",
            None,
        );
    };
    server.state.register(node);
    // Joining servers need the cluster CA, as k3s hands it out from its datastore.
    respond(
        StatusCode::OK,
        json!({"caCert": server.ca.cert_pem, "caKey": server.ca.key_pem}),
    )
}
