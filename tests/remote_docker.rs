//! A Docker Engine reached over TLS, as a remote engine is: a TLS-terminating
//! proxy that requires a client certificate listens on 127.0.0.1 and forwards
//! to the local engine's socket; certificates are made here. The manager is
//! pointed at it through its config (never the process environment, so tests
//! running in parallel do not interfere): dockerHost + dockerTlsVerify +
//! dockerCertPath, or a Docker context in a dockerConfig directory.

mod support;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_rustls::rustls;

use kecs_cluster::{ClusterManager, ClusterManagerConfig, CreateOptions, ErrorCode};
use support::*;

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// A certificate authority made for one test.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let cert_pem = ca_params(name).self_signed(&key).unwrap().pem();
        Ca {
            cert_pem,
            issuer: Issuer::new(ca_params(name), key),
        }
    }

    /// (certificate PEM, key PEM) for a leaf: the engine's serving certificate
    /// for 127.0.0.1, or a client certificate.
    fn leaf(&self, serving: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        if serving {
            params.distinguished_name.push(DnType::CommonName, "engine");
            params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.distinguished_name.push(DnType::CommonName, "client");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes the Docker CLI's three files into `dir`.
fn write_cert_dir(dir: &Path, ca_pem: &str, (cert, key): &(String, String)) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// The TLS-terminating proxy: its own thread and runtime, ended (and joined)
/// when dropped, whatever the test's outcome.
struct TlsProxy {
    port: u16,
    /// Connections whose client certificate was accepted and were forwarded.
    forwarded: Arc<AtomicUsize>,
    /// Handshakes that failed (a refused client certificate among them).
    refused: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Serves `serving` (signed by `ca`) on 127.0.0.1 and accepts only client
    /// certificates signed by `ca`.
    fn start(ca: &Ca, serving: &(String, String)) -> TlsProxy {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pem_cert(&ca.cert_pem)).expect("CA certificate");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(serving.1.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![pem_cert(&serving.0)], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (forwarded, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let counters = (forwarded.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let tcp = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted {
                            Ok((tcp, _)) => tcp,
                            Err(_) => continue,
                        },
                    };
                    let (acceptor, (forwarded, refused)) = (acceptor.clone(), counters.clone());
                    tokio::spawn(async move {
                        let mut tls = match acceptor.accept(tcp).await {
                            Ok(tls) => tls,
                            Err(_) => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        };
                        let Ok(mut engine) = tokio::net::UnixStream::connect(ENGINE_SOCKET).await
                        else {
                            return;
                        };
                        forwarded.fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                    });
                }
            });
            // dropping the runtime ends the connections still being forwarded
        });
        TlsProxy {
            port,
            forwarded,
            refused,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn pem_cert(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The engine's CA, its serving certificate, and a proxy in front of the engine.
fn tls_engine() -> (Ca, TlsProxy) {
    let ca = Ca::new("kecs-test-engine-ca");
    let proxy = TlsProxy::start(&ca, &ca.leaf(true));
    (ca, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lifecycle_through_tls() {
    let _gate = shared();
    ensure_sim_image().await;
    let (ca, proxy) = tls_engine();
    let dir = TempDir::new("tls");
    let certs = dir.path().join("certs");
    write_cert_dir(&certs, &ca.cert_pem, &ca.leaf(false));
    let kubeconfigs = dir.path().join("kube");
    let local = config(&kubeconfigs, "k3d");
    let remote = ClusterManagerConfig {
        docker_host: Some(proxy.host()),
        docker_tls_verify: Some(true),
        docker_cert_path: Some(certs.display().to_string()),
        ..local.clone()
    };
    let manager = ClusterManager::new(&remote).unwrap();
    assert!(manager.config().docker.uses_tls());
    let name = unique_name("tls");
    let full = manager.cluster_name(&name).unwrap();
    // cleanup goes straight to the local socket, so it works whatever the proxy does
    let _cleanup = ClusterGuard {
        config: local,
        name: full.clone(),
    };

    let info = manager
        .create(&name, &CreateOptions::default(), &never())
        .await
        .unwrap();
    assert_eq!(info.name, full);
    assert!(info.running, "{info:?}");
    assert!(
        proxy.forwarded.load(Ordering::SeqCst) > 0,
        "nothing went through the TLS proxy"
    );
    // a loopback tcp:// engine is local: the kubeconfig points at 127.0.0.1
    let yaml = manager.kubeconfig(&name, &never()).await.unwrap();
    assert!(
        yaml.contains(&format!("https://127.0.0.1:{}", info.api_port)),
        "{yaml}"
    );
    let list = manager.list(&never()).await.unwrap();
    assert!(list.iter().any(|c| c.name == full), "list misses {full}");

    manager.delete(&name, &never()).await.unwrap();
    assert!(!manager.exists(&name, &never()).await.unwrap());
    assert_eq!(leftovers(&full).await, Vec::<String>::new());
    assert_eq!(files_in(&kubeconfigs), Vec::<String>::new());
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 0);
}

/// The Docker CLI's context layout: config.json naming the current context,
/// its meta.json, and its TLS files, under directories named by the SHA-256 of
/// the context's name. Without `ca_pem` the context skips TLS verification
/// (`docker context create --docker skip-tls-verify=true`).
fn write_context(
    config_dir: &Path,
    name: &str,
    host: &str,
    ca_pem: Option<&str>,
    client: &(String, String),
) {
    let id = sha256_hex(name);
    let meta = config_dir.join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"{name}","Metadata":{{"Description":"kecs test"}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{}}}}}}}"#,
            ca_pem.is_none()
        ),
    )
    .unwrap();
    let tls = config_dir.join("contexts/tls").join(&id).join("docker");
    match ca_pem {
        Some(ca) => write_cert_dir(&tls, ca, client),
        None => {
            std::fs::create_dir_all(&tls).unwrap();
            std::fs::write(tls.join("cert.pem"), &client.0).unwrap();
            std::fs::write(tls.join("key.pem"), &client.1).unwrap();
        }
    }
    std::fs::write(
        config_dir.join("config.json"),
        format!(r#"{{"auths":{{}},"currentContext":"{name}"}}"#),
    )
    .unwrap();
}

/// SHA-256 by the coreutils tool, independent of the library's own.
fn sha256_hex(s: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_contexts_reach_the_engine_over_tls() {
    let _gate = shared();
    let (ca, proxy) = tls_engine();
    let dir = TempDir::new("ctx");
    // a verified context, and one with SkipTLSVerify and no ca.pem
    for (context, ca_pem) in [
        ("kecs-remote", Some(ca.cert_pem.as_str())),
        ("kecs-skip-verify", None),
    ] {
        let docker_config = dir.path().join(context);
        write_context(
            &docker_config,
            context,
            &proxy.host(),
            ca_pem,
            &ca.leaf(false),
        );
        let cfg = ClusterManagerConfig {
            docker_config: Some(docker_config.display().to_string()),
            // explicit, so a DOCKER_HOST in the test's environment does not win
            docker_context: Some(context.into()),
            ..config(&dir.path().join("kube"), "k3d")
        };
        let manager = ClusterManager::new(&cfg).unwrap();
        assert_eq!(manager.config().docker.context.as_deref(), Some(context));
        let before = proxy.forwarded.load(Ordering::SeqCst);
        let name = unique_name("ctx");
        assert!(!manager.exists(&name, &never()).await.unwrap(), "{context}");
        manager.list(&never()).await.unwrap();
        assert!(
            proxy.forwarded.load(Ordering::SeqCst) > before,
            "{context}: nothing went through the TLS proxy"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_docker_unavailable_and_say_tls() {
    let (ca, proxy) = tls_engine();
    let dir = TempDir::new("tlsbad");
    let stranger = Ca::new("kecs-test-other-ca");
    // a client certificate from another CA: the proxy refuses it
    let wrong_client = dir.path().join("wrong-client");
    write_cert_dir(&wrong_client, &ca.cert_pem, &stranger.leaf(false));
    // trusting another CA: the engine's certificate is refused
    let wrong_ca = dir.path().join("wrong-ca");
    write_cert_dir(&wrong_ca, &stranger.cert_pem, &ca.leaf(false));
    // the engine's side refuses with an alert; our side names the unknown issuer
    for (certs, why) in [(&wrong_client, "alert"), (&wrong_ca, "UnknownIssuer")] {
        let cfg = ClusterManagerConfig {
            docker_host: Some(proxy.host()),
            docker_tls_verify: Some(true),
            docker_cert_path: Some(certs.display().to_string()),
            kubeconfig_path: Some(dir.path().display().to_string()),
            ..Default::default()
        };
        let manager = ClusterManager::new(&cfg).unwrap();
        let e = manager.list(&never()).await.unwrap_err();
        eprintln!("{}: {e}", certs.display());
        assert_eq!(e.code(), ErrorCode::DockerUnavailable, "{e}");
        assert!(e.to_string().contains("TLS"), "{e}");
        assert!(e.to_string().contains(&proxy.host()), "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
    assert_eq!(proxy.forwarded.load(Ordering::SeqCst), 0);
}

#[test]
fn missing_certificate_files_are_invalid_arguments_before_any_call() {
    let dir = TempDir::new("tlsmiss");
    let ca = Ca::new("kecs-test-ca");
    write_cert_dir(dir.path(), &ca.cert_pem, &ca.leaf(false));
    std::fs::remove_file(dir.path().join("cert.pem")).unwrap();
    // a loopback port nothing listens on: no call is made anyway
    let cfg = ClusterManagerConfig {
        docker_host: Some(format!("tcp://127.0.0.1:{}", free_port())),
        docker_tls_verify: Some(true),
        docker_cert_path: Some(dir.path().display().to_string()),
        kubeconfig_path: Some(dir.path().display().to_string()),
        ..Default::default()
    };
    let e = ClusterManager::new(&cfg).err().expect("refused");
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    let cert = dir.path().join("cert.pem").display().to_string();
    assert!(e.to_string().contains(&cert), "{e}");
}
