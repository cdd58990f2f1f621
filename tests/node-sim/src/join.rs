//! Joining: a node registers with the server named in `K3S_URL`, by name, over TLS,
//! authenticated by the cluster token, retrying while the server is unreachable.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::logfmt;
use crate::pki::CaPem;
use crate::state::NodeRecord;

/// The token authenticates both sides in this simulation (k3s pins the CA hash
/// carried in the token instead); the server certificate is not checked.
#[derive(Debug)]
pub struct AcceptAny(pub Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub enum JoinError {
    Unreachable(String),
    Rejected(String),
}

/// `https://host:port` → (host, port)
pub fn parse_url(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let hostport = rest.split('/').next()?;
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((hostport.to_string(), 6443)),
    }
}

/// A client certificate and key (PEM) to present.
pub type ClientCert<'a> = (&'a str, &'a str);

/// What came back: status code, headers, body.
pub type HttpResponse = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTPS request to another node of the cluster (the server certificate is
/// not checked, see `AcceptAny`), optionally with a client certificate.
pub async fn https(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    client: Option<ClientCert<'_>>,
    limit: Duration,
) -> Result<HttpResponse, JoinError> {
    let (host, port) =
        parse_url(url).ok_or_else(|| JoinError::Rejected(format!("invalid server URL {url:?}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| JoinError::Rejected(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)));
    let cfg = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| JoinError::Rejected(e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut key.as_bytes())
                .map_err(|e| JoinError::Rejected(e.to_string()))?
                .ok_or_else(|| JoinError::Rejected("no client key".into()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| JoinError::Rejected(e.to_string()))?
        }
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(3),
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| JoinError::Unreachable(format!("dial {host}:{port}: timeout")))?
    .map_err(|e| JoinError::Unreachable(format!("dial {host}:{port}: {e}")))?;
    let name =
        ServerName::try_from(host.clone()).map_err(|e| JoinError::Rejected(e.to_string()))?;
    // a peer that accepts connections but never answers (a paused container)
    // counts as unreachable once the limit is up
    let mut tls = tokio::time::timeout(limit, TlsConnector::from(Arc::new(cfg)).connect(name, tcp))
        .await
        .map_err(|_| JoinError::Unreachable(format!("TLS handshake with {host}:{port}: timeout")))?
        .map_err(|e| JoinError::Unreachable(format!("TLS handshake with {host}:{port}: {e}")))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let io = async {
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body).await?;
        let mut resp = Vec::new();
        // the server may close without close_notify; what was read is enough
        let _ = tls.read_to_end(&mut resp).await;
        Ok::<_, std::io::Error>(resp)
    };
    let resp = tokio::time::timeout(limit, io)
        .await
        .map_err(|_| JoinError::Unreachable(format!("{method} {path} timed out")))?
        .map_err(|e| JoinError::Unreachable(e.to_string()))?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| JoinError::Unreachable("malformed HTTP response".into()))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let mut lines = head.lines();
    let code: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((code, headers, resp[split + 4..].to_vec()))
}

/// One request to a server's join API, authenticated by the token: (status code, body).
pub async fn request(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: &[u8],
    limit: Duration,
) -> Result<(u16, String), JoinError> {
    let headers = [
        ("Content-Type", "application/json"),
        ("X-K3s-Sim-Token", token),
    ];
    let (code, _, body) = https(url, method, path, &headers, body, None, limit).await?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// Registers once: the cluster CA, and the cluster state a server answers with.
async fn register_for_state(
    url: &str,
    token: &str,
    node: &NodeRecord,
) -> Result<(CaPem, Value), JoinError> {
    let body = serde_json::to_vec(node).expect("node record serialises");
    let (code, json) = request(
        url,
        token,
        "POST",
        "/v1-k3s-sim/register",
        &body,
        Duration::from_secs(5),
    )
    .await?;
    if code == 401 {
        return Err(JoinError::Rejected(
            "token rejected by server (401 Unauthorized)".into(),
        ));
    }
    if code != 200 {
        return Err(JoinError::Unreachable(format!(
            "server answered HTTP {code}"
        )));
    }
    let v: Value = serde_json::from_str(&json)
        .map_err(|e| JoinError::Unreachable(format!("bad registration reply: {e}")))?;
    let ca = CaPem {
        cert_pem: v["caCert"].as_str().unwrap_or_default().to_string(),
        key_pem: v["caKey"].as_str().unwrap_or_default().to_string(),
    };
    Ok((ca, v["state"].clone()))
}

/// How a node that cannot register yet waits before it tries again.
#[derive(Clone, Copy)]
pub enum Retry {
    /// As a k3s agent waits for its configuration: `Get` in k3s's
    /// pkg/agent/config/config.go retries on a 5 s period with a jitter factor
    /// of 1.0 (k8s.io/apimachinery's jittered wait), i.e. a random 5–10 s
    /// between attempts, the first attempt at once; a token the server rejects
    /// is retried the same way. (The agent's client-side load balancer tries
    /// every server it knows on each attempt, without waiting between them.)
    AgentConfig,
    /// A short back-off (20 ms doubling to 50 ms): a joining server comes up
    /// as soon as the member it joins answers.
    Quick,
}

/// The period `Retry::AgentConfig` waits at least, and jitters up to twice.
const AGENT_CONFIG_PERIOD: Duration = Duration::from_secs(5);

impl Retry {
    /// The wait after the `attempt`-th round (0-based) of failed registrations.
    fn delay(self, attempt: u32) -> Duration {
        match self {
            Retry::AgentConfig => AGENT_CONFIG_PERIOD.mul_f64(1.0 + unit_random()),
            Retry::Quick => {
                Duration::from_millis(20 << attempt.min(2)).min(Duration::from_millis(50))
            }
        }
    }
}

/// A uniformly random number in [0, 1].
fn unit_random() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

/// A node joining (or rejoining) a cluster: registers with the first
/// of `urls` that answers, trying them in turn (the `--server` URL, then the
/// servers a previous run knew, as a k3s node rejoins through any of them);
/// returns the cluster CA and state. A rejected token is logged and retried,
/// as a k3s agent does, so such a node never registers. Between rounds the
/// node waits as `retry` says.
pub async fn register_with_any(
    urls: &[String],
    token: &str,
    node: &NodeRecord,
    retry: Retry,
) -> (CaPem, Value) {
    for attempt in 0.. {
        for url in urls {
            match register_for_state(url, token, node).await {
                Ok(joined) => return joined,
                Err(JoinError::Unreachable(e)) => logfmt::info(&format!(
                    "Waiting to retrieve agent configuration; server is not ready: {e}"
                )),
                Err(JoinError::Rejected(e)) => {
                    logfmt::error(&format!("Failed to register node {}: {e}", node.name))
                }
            }
        }
        tokio::time::sleep(retry.delay(attempt)).await;
    }
    unreachable!("the registration loop only ends by returning")
}

/// Registers with the first of `urls` that answers, retrying while none does:
/// the cluster CA and state. A rejected token is an error (kubeadm join fails
/// on it).
pub async fn register_retrying(
    urls: &[String],
    token: &str,
    node: &NodeRecord,
) -> Result<(CaPem, Value), String> {
    for attempt in 0.. {
        for url in urls {
            match register_for_state(url, token, node).await {
                Ok(joined) => return Ok(joined),
                Err(JoinError::Unreachable(e)) => {
                    logfmt::info(&format!("Waiting for the control plane at {url}: {e}"))
                }
                Err(JoinError::Rejected(e)) => return Err(e),
            }
        }
        tokio::time::sleep(Retry::Quick.delay(attempt)).await;
    }
    unreachable!("the registration loop only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::Retry;
    use std::time::Duration;

    #[test]
    fn agents_retry_at_k3s_jittered_period() {
        for attempt in 0..50 {
            let d = Retry::AgentConfig.delay(attempt);
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
        let quick: Vec<Duration> = (0..4).map(|a| Retry::Quick.delay(a)).collect();
        assert_eq!(quick, [20, 40, 50, 50].map(Duration::from_millis).to_vec());
    }
}
