//! Which Docker Engine to talk to and how, resolved the way the Docker CLI
//! resolves it: an explicit host (`dockerHost`, else `DOCKER_HOST`) with its TLS
//! settings (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), else a Docker context
//! (`DOCKER_CONTEXT`, else `currentContext` in `$DOCKER_CONFIG/config.json`),
//! else the local socket. Also builds the TLS client for a `tcp://` engine with
//! ring, the one crypto provider in the tree (kube's), so no process-wide
//! provider is installed or needed.

use bollard::{BollardRequest, Docker, API_DEFAULT_VERSION};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

pub const LOCAL_SOCKET: &str = "unix:///var/run/docker.sock";
/// Bollard's per-request limit for response headers (its own default).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// The name of the context that means "the local engine, or DOCKER_HOST".
const DEFAULT_CONTEXT: &str = "default";

/// The engine to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// The host as configured (`unix:///…`, `tcp://…`); messages name it.
    pub url: String,
    pub transport: Transport,
    /// The Docker context it came from, if one did.
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Unix(PathBuf),
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        port: u16,
        tls: Option<TlsFiles>,
    },
}

/// The TLS material of a `tcp://` engine (the Docker CLI's file names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `ca.pem`: the engine's certificate must chain to it (None only when
    /// verification is skipped).
    pub ca: Option<PathBuf>,
    /// `cert.pem` and `key.pem`: our client certificate, when we have one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// A context's `SkipTLSVerify`: encrypt, but accept any engine certificate.
    pub skip_verify: bool,
}

/// The caller's explicit Docker settings (config fields); unset ones fall back
/// to the environment.
#[derive(Debug, Clone, Default)]
pub struct DockerSettings {
    pub host: Option<String>,
    pub tls_verify: Option<bool>,
    pub cert_path: Option<String>,
    pub config_dir: Option<String>,
    pub context: Option<String>,
}

impl DockerEndpoint {
    pub fn local() -> DockerEndpoint {
        parse_host(LOCAL_SOCKET, None).expect("the local socket URL parses")
    }

    /// A plain (no TLS) endpoint from a host string: `unix://…`, a socket path,
    /// `tcp://…` or `http://…`.
    pub fn plain(host: &str) -> Result<DockerEndpoint> {
        parse_host(host, None)
    }

    /// The engine's host name or address when it runs on another machine (a
    /// `tcp://` host that is not a loopback address): published ports are
    /// reached there, not on 127.0.0.1.
    pub fn remote_host(&self) -> Option<&str> {
        match &self.transport {
            Transport::Tcp { host, .. } if !is_loopback(host) => Some(host),
            _ => None,
        }
    }

    pub fn uses_tls(&self) -> bool {
        matches!(&self.transport, Transport::Tcp { tls: Some(_), .. })
    }

    /// A bollard client for this endpoint (no request made yet).
    pub(crate) fn client(&self) -> Result<Docker> {
        let unavailable = |e: bollard::errors::Error| {
            Error::DockerUnavailable(format!("cannot use the Docker Engine at {}: {e}", self.url))
        };
        match &self.transport {
            Transport::Unix(path) => Docker::connect_with_unix(
                &format!("unix://{}", path.display()),
                REQUEST_TIMEOUT_SECS,
                API_DEFAULT_VERSION,
            )
            .map_err(unavailable),
            Transport::Tcp {
                host,
                port,
                tls: None,
            } => Docker::connect_with_http(
                &format!("http://{}", authority(host, *port)),
                REQUEST_TIMEOUT_SECS,
                API_DEFAULT_VERSION,
            )
            .map_err(unavailable),
            Transport::Tcp {
                host,
                port,
                tls: Some(tls),
            } => tls_client(&authority(host, *port), tls),
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses a Docker host URL. `tls` applies to `tcp://` hosts; `https://`
/// requires it. A `tcp://` host without a port gets Docker's default (2376
/// with TLS, 2375 without).
fn parse_host(url: &str, tls: Option<TlsFiles>) -> Result<DockerEndpoint> {
    let url = url.trim();
    let bad = |why: &str| {
        Error::InvalidArgument(format!(
            "Docker host {url:?}: {why} (use unix:///path/docker.sock or tcp://host:port)"
        ))
    };
    let endpoint = |transport| DockerEndpoint {
        url: url.to_string(),
        transport,
        context: None,
    };
    if url.starts_with('/') {
        return Ok(endpoint(Transport::Unix(PathBuf::from(url))));
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    match scheme {
        "unix" if rest.starts_with('/') => Ok(endpoint(Transport::Unix(PathBuf::from(rest)))),
        "unix" => Err(bad("the socket path must be absolute")),
        "tcp" | "http" | "https" => {
            if scheme == "https" && tls.is_none() {
                return Err(bad(
                    "https:// needs TLS settings: set dockerTlsVerify (or DOCKER_TLS_VERIFY) and the certificate directory",
                ));
            }
            let tls = if scheme == "http" { None } else { tls };
            let authority = rest.strip_suffix('/').unwrap_or(rest);
            if authority.contains('/') {
                return Err(bad("a path after the address is not supported"));
            }
            let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad address"))?;
            let port = match port {
                Some(p) => p,
                None if tls.is_some() => 2376,
                None => 2375,
            };
            Ok(endpoint(Transport::Tcp {
                host: host.to_string(),
                port,
                tls,
            }))
        }
        "ssh" | "npipe" | "fd" => Err(bad(&format!("{scheme}:// is not supported"))),
        _ => Err(bad("unknown scheme")),
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; None when malformed.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

/// Resolves the engine from `settings`, then `env` (a lookup such as
/// `std::env::var`), as the Docker CLI does. Reads the Docker CLI's config and
/// context files; makes no Docker call. Missing certificate files are reported
/// here, naming the file.
pub fn resolve(
    settings: &DockerSettings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DockerEndpoint> {
    if settings.host.is_some() && settings.context.is_some() {
        return Err(Error::InvalidArgument(
            "dockerHost and dockerContext are both set: use one (as the Docker CLI refuses --host with --context)".into(),
        ));
    }
    let config_dir = settings
        .config_dir
        .clone()
        .or_else(|| env("DOCKER_CONFIG"))
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")));
    if let Some(host) = &settings.host {
        return from_host(host, settings, env, config_dir.as_deref());
    }
    if let Some(name) = &settings.context {
        return from_context(name, "dockerContext", settings, env, config_dir.as_deref());
    }
    if let Some(host) = env("DOCKER_HOST") {
        return from_host(&host, settings, env, config_dir.as_deref());
    }
    if let Some(name) = env("DOCKER_CONTEXT") {
        return from_context(
            &name,
            "DOCKER_CONTEXT",
            settings,
            env,
            config_dir.as_deref(),
        );
    }
    match config_dir.as_deref() {
        Some(dir) => match current_context(dir)? {
            Some(name) => {
                let source = format!("currentContext in {}", dir.join("config.json").display());
                from_context(&name, &source, settings, env, Some(dir))
            }
            None => Ok(DockerEndpoint::local()),
        },
        None => Ok(DockerEndpoint::local()),
    }
}

/// A host with the TLS flags: `dockerTlsVerify`, else `DOCKER_TLS_VERIFY` set
/// to anything (as the Docker CLI reads it); certificates from `dockerCertPath`,
/// else `DOCKER_CERT_PATH`, else the Docker config directory (~/.docker).
fn from_host(
    host: &str,
    settings: &DockerSettings,
    env: &dyn Fn(&str) -> Option<String>,
    config_dir: Option<&Path>,
) -> Result<DockerEndpoint> {
    let verify = settings
        .tls_verify
        .unwrap_or_else(|| env("DOCKER_TLS_VERIFY").is_some())
        || host.trim().starts_with("https://");
    let is_tcp = !host.trim().starts_with("unix://") && !host.trim().starts_with('/');
    let tls = if verify && is_tcp {
        let dir = settings
            .cert_path
            .clone()
            .or_else(|| env("DOCKER_CERT_PATH"))
            .map(PathBuf::from)
            .or_else(|| config_dir.map(Path::to_path_buf))
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "TLS verification is on but no certificate directory is known: set dockerCertPath or DOCKER_CERT_PATH (HOME is unset)".into(),
                )
            })?;
        let file = |name: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::InvalidArgument(format!(
                    "TLS verification is on for Docker host {host} but {} does not exist: set dockerCertPath or DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem",
                    path.display()
                )))
            }
        };
        Some(TlsFiles {
            ca: Some(file("ca.pem")?),
            client: Some((file("cert.pem")?, file("key.pem")?)),
            skip_verify: false,
        })
    } else {
        None
    };
    parse_host(host, tls)
}

/// The `currentContext` of `<dir>/config.json`; None when the file or the
/// field is absent.
fn current_context(dir: &Path) -> Result<Option<String>> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "reading the Docker CLI config {}: {e}",
                path.display()
            )))
        }
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::InvalidArgument(format!(
            "the Docker CLI config {} is not valid JSON: {e}",
            path.display()
        ))
    })?;
    Ok(json
        .get("currentContext")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from))
}

/// The directory name the Docker CLI stores a context under: hex SHA-256 of its name.
fn context_dir_name(name: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, name.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A named context: its meta.json's docker endpoint (Host, SkipTLSVerify) and
/// the TLS files stored beside it. "default" is DOCKER_HOST or the local socket.
fn from_context(
    name: &str,
    source: &str,
    settings: &DockerSettings,
    env: &dyn Fn(&str) -> Option<String>,
    config_dir: Option<&Path>,
) -> Result<DockerEndpoint> {
    let name = name.trim();
    if name == DEFAULT_CONTEXT {
        return match env("DOCKER_HOST") {
            Some(host) => from_host(&host, settings, env, config_dir),
            None => Ok(DockerEndpoint::local()),
        };
    }
    let dir = config_dir.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "Docker context {name:?} ({source}): no Docker config directory (set dockerConfig or DOCKER_CONFIG; HOME is unset)"
        ))
    })?;
    let id = context_dir_name(name);
    let meta_path = dir.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|e| {
        Error::InvalidArgument(format!(
            "Docker context {name:?} ({source}) not found: reading {}: {e}",
            meta_path.display()
        ))
    })?;
    let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::InvalidArgument(format!(
            "Docker context {name:?}: {} is not valid JSON: {e}",
            meta_path.display()
        ))
    })?;
    let docker = meta.pointer("/Endpoints/docker");
    let host = docker
        .and_then(|d| d.get("Host"))
        .and_then(|h| h.as_str())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or(LOCAL_SOCKET);
    let skip_verify = docker
        .and_then(|d| d.get("SkipTLSVerify"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let tls_dir = dir.join("contexts/tls").join(&id).join("docker");
    let existing = |file: &str| Some(tls_dir.join(file)).filter(|p| p.is_file());
    let (ca, cert, key) = (
        existing("ca.pem"),
        existing("cert.pem"),
        existing("key.pem"),
    );
    let missing = |file: &str| {
        Error::InvalidArgument(format!(
            "Docker context {name:?}: {} does not exist (the context's TLS material is incomplete)",
            tls_dir.join(file).display()
        ))
    };
    let tls = if ca.is_none() && cert.is_none() && key.is_none() && !skip_verify {
        None
    } else {
        if ca.is_none() && !skip_verify {
            return Err(missing("ca.pem"));
        }
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => return Err(missing("key.pem")),
            (None, Some(_)) => return Err(missing("cert.pem")),
        };
        Some(TlsFiles {
            ca,
            client,
            skip_verify,
        })
    };
    let mut endpoint = parse_host(host, tls)
        .map_err(|e| e.context(format!("Docker context {name:?} ({})", meta_path.display())))?;
    endpoint.context = Some(name.to_string());
    Ok(endpoint)
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::InvalidArgument(format!("reading certificates from {}: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for `tls`: only `ca.pem` is trusted (as the
/// Docker CLI does), and the client certificate is presented when there is one.
fn tls_config(tls: &TlsFiles) -> Result<rustls::ClientConfig> {
    let provider = ring_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS protocol versions: {e}")))?;
    let builder = match (&tls.ca, tls.skip_verify) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider))),
        (Some(ca), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_pem_certs(ca)? {
                roots.add(cert).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "{}: not a usable CA certificate: {e}",
                        ca.display()
                    ))
                })?;
            }
            builder.with_root_certificates(roots)
        }
        (None, false) => {
            return Err(Error::InvalidArgument(
                "TLS verification needs ca.pem".into(),
            ))
        }
    };
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_pem_certs(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::InvalidArgument(format!("reading the private key {}: {e}", key.display()))
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                Error::InvalidArgument(format!(
                    "client certificate {} with key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })
        }
    }
}

/// A bollard client speaking HTTPS to `authority` through our own hyper-rustls
/// connector (bollard's TLS features would add a second provider or need a
/// process-wide one).
fn tls_client(authority: &str, tls: &TlsFiles) -> Result<Docker> {
    let config = tls_config(tls)?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    // as bollard's own clients: no idle connections kept across requests
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(https));
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{authority}")),
        REQUEST_TIMEOUT_SECS,
        API_DEFAULT_VERSION,
    )
    .map_err(|e| {
        Error::Internal(format!(
            "building the TLS Docker client for {authority}: {e}"
        ))
    })
}

/// The TLS failure inside `err`, if a TLS error caused it (a rejected client
/// certificate, an engine certificate from an unknown CA, a peer not speaking
/// TLS).
pub(crate) fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        // io::Error::source skips the error it wraps (bollard's IOError is
        // transparent, and hyper-rustls wraps tokio-rustls' io::Error in
        // another): step into io::Errors explicitly
        let io = match e.downcast_ref::<bollard::errors::Error>() {
            Some(bollard::errors::Error::IOError { err }) => Some(err),
            _ => e.downcast_ref::<std::io::Error>(),
        };
        cur = match io {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// A context's SkipTLSVerify: any engine certificate is accepted; signatures
/// are still checked with ring so the handshake itself is sound.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A temporary directory removed on drop.
    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let p = std::env::temp_dir()
                .join(format!("kecs-docker-host-{tag}-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn write(&self, rel: &str, text: &str) -> PathBuf {
            assert!(!rel.starts_with('/'), "{rel} must be relative");
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        }
        fn s(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn resolve_env(settings: &DockerSettings, pairs: &[(&str, &str)]) -> Result<DockerEndpoint> {
        resolve(settings, &env(pairs))
    }

    fn tcp(e: &DockerEndpoint) -> (&str, u16, Option<&TlsFiles>) {
        match &e.transport {
            Transport::Tcp { host, port, tls } => (host, *port, tls.as_ref()),
            other => panic!("not tcp: {other:?}"),
        }
    }

    /// ca.pem, cert.pem, key.pem in `rel` (contents are not parsed here).
    fn cert_files(tmp: &Tmp, rel: &str) -> PathBuf {
        let dir = tmp.0.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        dir
    }

    #[test]
    fn parses_hosts() {
        assert_eq!(
            DockerEndpoint::plain("/run/docker.sock").unwrap().transport,
            Transport::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            DockerEndpoint::local().transport,
            Transport::Unix("/var/run/docker.sock".into())
        );
        let e = DockerEndpoint::plain("tcp://192.0.2.5").unwrap();
        assert_eq!(tcp(&e), ("192.0.2.5", 2375, None));
        assert_eq!(e.remote_host(), Some("192.0.2.5"));
        let e = DockerEndpoint::plain("tcp://[fd00::1]:2377/").unwrap();
        assert_eq!(tcp(&e), ("fd00::1", 2377, None));
        for local in [
            "tcp://127.0.0.1:2375",
            "tcp://localhost:1",
            "tcp://[::1]:2",
            "unix:///s",
        ] {
            assert_eq!(
                DockerEndpoint::plain(local).unwrap().remote_host(),
                None,
                "{local}"
            );
        }
        for bad in [
            "ssh://user@host",
            "npipe:////./pipe/docker_engine",
            "docker.sock",
            "unix://relative.sock",
            "tcp://host:notaport",
            "tcp://host:2375/base/path",
            "tcp://:2375",
            "https://host:2376",
        ] {
            let e = DockerEndpoint::plain(bad).unwrap_err();
            assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn docker_host_with_tls_from_env_and_config() {
        let tmp = Tmp::new("tls");
        let certs = cert_files(&tmp, "certs");
        let e = resolve_env(
            &DockerSettings::default(),
            &[
                ("DOCKER_HOST", "tcp://192.0.2.3"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", &certs.display().to_string()),
            ],
        )
        .unwrap();
        let (host, port, tls) = tcp(&e);
        assert_eq!((host, port), ("192.0.2.3", 2376));
        let tls = tls.expect("TLS");
        assert_eq!(tls.ca.as_deref(), Some(certs.join("ca.pem").as_path()));
        assert_eq!(
            tls.client,
            Some((certs.join("cert.pem"), certs.join("key.pem")))
        );
        assert!(!tls.skip_verify);

        // explicit fields win over the environment, one by one
        let e = resolve_env(
            &DockerSettings {
                host: Some("tcp://127.0.0.1:9999".into()),
                tls_verify: Some(false),
                ..Default::default()
            },
            &[
                ("DOCKER_HOST", "tcp://192.0.2.3"),
                ("DOCKER_TLS_VERIFY", "1"),
            ],
        )
        .unwrap();
        assert_eq!(tcp(&e), ("127.0.0.1", 9999, None));
        let other = cert_files(&tmp, "other");
        let e = resolve_env(
            &DockerSettings {
                tls_verify: Some(true),
                cert_path: Some(other.display().to_string()),
                ..Default::default()
            },
            &[
                ("DOCKER_HOST", "tcp://192.0.2.3:2376"),
                ("DOCKER_CERT_PATH", &certs.display().to_string()),
            ],
        )
        .unwrap();
        assert_eq!(
            tcp(&e).2.unwrap().ca.as_deref(),
            Some(other.join("ca.pem").as_path())
        );

        // TLS settings mean nothing to a unix socket
        let e = resolve_env(
            &DockerSettings::default(),
            &[
                ("DOCKER_HOST", "unix:///x.sock"),
                ("DOCKER_TLS_VERIFY", "1"),
            ],
        )
        .unwrap();
        assert!(!e.uses_tls());
    }

    #[test]
    fn cert_path_defaults_to_the_docker_config_dir() {
        let home = Tmp::new("home");
        let dot_docker = cert_files(&home, ".docker");
        let e = resolve_env(
            &DockerSettings::default(),
            &[
                ("HOME", &home.s()),
                ("DOCKER_HOST", "tcp://h:1"),
                ("DOCKER_TLS_VERIFY", "1"),
            ],
        )
        .unwrap();
        assert_eq!(
            tcp(&e).2.unwrap().ca.as_deref(),
            Some(dot_docker.join("ca.pem").as_path())
        );
        let cfg = Tmp::new("cfg");
        let in_cfg = cert_files(&cfg, "");
        let e = resolve_env(
            &DockerSettings::default(),
            &[
                ("HOME", &home.s()),
                ("DOCKER_CONFIG", &cfg.s()),
                ("DOCKER_HOST", "tcp://h:1"),
                ("DOCKER_TLS_VERIFY", "1"),
            ],
        )
        .unwrap();
        assert_eq!(
            tcp(&e).2.unwrap().ca.as_deref(),
            Some(in_cfg.join("ca.pem").as_path())
        );
    }

    #[test]
    fn missing_cert_files_name_the_file() {
        let tmp = Tmp::new("missing");
        tmp.write("ca.pem", "x");
        tmp.write("cert.pem", "x");
        let e = resolve_env(
            &DockerSettings {
                host: Some("tcp://192.0.2.1:2376".into()),
                tls_verify: Some(true),
                cert_path: Some(tmp.s()),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
        let key = tmp.0.join("key.pem").display().to_string();
        assert!(e.to_string().contains(&key), "{e}");
    }

    const META_REMOTE: &str =
        "contexts/meta/b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a/meta.json";
    const TLS_REMOTE: &str =
        "contexts/tls/b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a/docker";

    fn meta(host: &str, skip: bool) -> String {
        format!(
            r#"{{"Name":"remote","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
        )
    }

    #[test]
    fn context_directory_is_the_sha256_of_the_name() {
        assert_eq!(
            context_dir_name("default"),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }

    #[test]
    fn contexts_resolve_as_the_docker_cli_does() {
        let cfg = Tmp::new("ctx");
        cfg.write("config.json", r#"{"auths":{},"currentContext":"remote"}"#);
        cfg.write(META_REMOTE, &meta("tcp://10.9.8.7:2376", false));
        let tls_dir = cert_files(&cfg, TLS_REMOTE);
        let dir = cfg.s();

        // currentContext in config.json
        let e = resolve_env(&DockerSettings::default(), &[("DOCKER_CONFIG", &dir)]).unwrap();
        assert_eq!(e.context.as_deref(), Some("remote"));
        let (host, port, tls) = tcp(&e);
        assert_eq!((host, port), ("10.9.8.7", 2376));
        let tls = tls.unwrap();
        assert_eq!(tls.ca.as_deref(), Some(tls_dir.join("ca.pem").as_path()));
        assert!(tls.client.is_some());

        // DOCKER_HOST wins over every context
        let e = resolve_env(
            &DockerSettings::default(),
            &[
                ("DOCKER_CONFIG", &dir),
                ("DOCKER_HOST", "unix:///h.sock"),
                ("DOCKER_CONTEXT", "remote"),
            ],
        )
        .unwrap();
        assert_eq!(e.transport, Transport::Unix("/h.sock".into()));
        assert_eq!(e.context, None);

        // DOCKER_CONTEXT wins over currentContext; "default" is the local socket
        let e = resolve_env(
            &DockerSettings::default(),
            &[("DOCKER_CONFIG", &dir), ("DOCKER_CONTEXT", "default")],
        )
        .unwrap();
        assert_eq!(e, DockerEndpoint::local());

        // the config's dockerContext and dockerConfig win over the environment
        let e = resolve_env(
            &DockerSettings {
                context: Some("remote".into()),
                config_dir: Some(dir.clone()),
                ..Default::default()
            },
            &[
                ("DOCKER_HOST", "unix:///h.sock"),
                ("DOCKER_CONFIG", "/nowhere"),
            ],
        )
        .unwrap();
        assert_eq!(e.context.as_deref(), Some("remote"));

        // dockerHost and dockerContext together are refused
        let e = resolve_env(
            &DockerSettings {
                host: Some("unix:///h.sock".into()),
                context: Some("remote".into()),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);

        // an unknown context names itself and the file looked for
        let e = resolve_env(
            &DockerSettings::default(),
            &[("DOCKER_CONFIG", &dir), ("DOCKER_CONTEXT", "nope")],
        )
        .unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
        assert!(e.to_string().contains("\"nope\""), "{e}");
        assert!(e.to_string().contains("meta.json"), "{e}");
    }

    #[test]
    fn context_tls_variants() {
        // no TLS material: plain tcp
        let cfg = Tmp::new("ctx-plain");
        cfg.write(META_REMOTE, &meta("tcp://10.9.8.7:2375", false));
        let settings = DockerSettings {
            context: Some("remote".into()),
            config_dir: Some(cfg.s()),
            ..Default::default()
        };
        let e = resolve_env(&settings, &[]).unwrap();
        assert_eq!(tcp(&e), ("10.9.8.7", 2375, None));

        // SkipTLSVerify without files: TLS, no CA, no client certificate
        let cfg = Tmp::new("ctx-skip");
        cfg.write(META_REMOTE, &meta("tcp://10.9.8.7", true));
        let settings = DockerSettings {
            context: Some("remote".into()),
            config_dir: Some(cfg.s()),
            ..Default::default()
        };
        let e = resolve_env(&settings, &[]).unwrap();
        let (_, port, tls) = tcp(&e);
        assert_eq!(port, 2376);
        assert_eq!(
            tls,
            Some(&TlsFiles {
                ca: None,
                client: None,
                skip_verify: true
            })
        );

        // a certificate without its key is incomplete
        let cfg = Tmp::new("ctx-nokey");
        cfg.write(META_REMOTE, &meta("tcp://10.9.8.7", false));
        cfg.write(&format!("{TLS_REMOTE}/ca.pem"), "x");
        cfg.write(&format!("{TLS_REMOTE}/cert.pem"), "x");
        let settings = DockerSettings {
            context: Some("remote".into()),
            config_dir: Some(cfg.s()),
            ..Default::default()
        };
        let e = resolve_env(&settings, &[]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
        assert!(e.to_string().contains("key.pem"), "{e}");
    }

    #[test]
    fn broken_config_json_is_reported() {
        let cfg = Tmp::new("badjson");
        cfg.write("config.json", "{not json");
        let e =
            resolve_env(&DockerSettings::default(), &[("DOCKER_CONFIG", &cfg.s())]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument);
        assert!(e.to_string().contains("config.json"), "{e}");
        // no config.json at all: the local engine
        let empty = Tmp::new("nojson");
        let e = resolve_env(&DockerSettings::default(), &[("DOCKER_CONFIG", &empty.s())]).unwrap();
        assert_eq!(e, DockerEndpoint::local());
    }

    #[test]
    fn tls_failures_are_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        let outer = bollard::errors::Error::IOError { err: io };
        assert!(tls_failure(&outer).is_some_and(|m| m.contains("UnknownCA")));
        // hyper-rustls wraps tokio-rustls' io::Error in another one
        let twice = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(tls_failure(&twice).is_some_and(|m| m.contains("UnknownIssuer")));
        let refused = bollard::errors::Error::IOError {
            err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(tls_failure(&refused), None);
    }
}
