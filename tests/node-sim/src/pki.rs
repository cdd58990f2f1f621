//! The node's certificates, made at boot as k3s makes them: a cluster CA, a serving
//! certificate for the API, and an admin client certificate for the kubeconfig.
//! A kind node names them as kubeadm does, and `kubeadm init` also makes the
//! CAs and key pair that control planes share (`shared_kubeadm_pki`): kind
//! copies those files to every other control plane before it joins.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;

/// The CA as PEM, shared with nodes that join (k3s shares it through its datastore).
#[derive(Clone)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Pki {
    pub ca: CaPem,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

/// Whose names the certificates carry: k3s's or kubeadm's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavor {
    K3s,
    Kubeadm,
}

impl Flavor {
    /// The cluster CA's common name. A leaf's issuer name is this CA's subject,
    /// so every certificate issued under a CA must be issued with its flavor.
    fn ca_name(self) -> &'static str {
        match self {
            Flavor::K3s => "k3s-server-ca",
            Flavor::Kubeadm => "kubernetes",
        }
    }

    fn serving_name(self) -> &'static str {
        match self {
            Flavor::K3s => "k3s",
            Flavor::Kubeadm => "kube-apiserver",
        }
    }

    /// The admin client certificate's (common name, organisation).
    fn admin_subject(self) -> (&'static str, &'static str) {
        match self {
            Flavor::K3s => ("system:admin", "system:masters"),
            Flavor::Kubeadm => ("kubernetes-admin", "kubeadm:cluster-admins"),
        }
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A new cluster CA.
pub fn new_ca(flavor: Flavor) -> Result<CaPem, rcgen::Error> {
    named_ca(flavor.ca_name())
}

fn named_ca(name: &str) -> Result<CaPem, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = ca_params(name).self_signed(&key)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Where kubeadm keeps its certificates.
pub const KUBEADM_PKI_DIR: &str = "/etc/kubernetes/pki";

/// What control planes of one kubeadm cluster share, as (CA name in kubeadm's
/// messages, certificate or public key, private key) relative to
/// `KUBEADM_PKI_DIR`, in the order kubeadm checks them before a control plane
/// joins. The service-account pair has a public key where the others have a
/// certificate.
pub const SHARED_KUBEADM_PKI: [(&str, &str, &str); 4] = [
    ("CA", "ca.crt", "ca.key"),
    ("service account", "sa.pub", "sa.key"),
    ("front-proxy CA", "front-proxy-ca.crt", "front-proxy-ca.key"),
    ("etcd CA", "etcd/ca.crt", "etcd/ca.key"),
];

/// A new set of the files in `SHARED_KUBEADM_PKI`, as (path, PEM) in the same
/// order: the cluster CA, a service-account key pair, the front-proxy CA and
/// the etcd CA, each under kubeadm's common name.
pub fn shared_kubeadm_pki() -> Result<Vec<(&'static str, String)>, rcgen::Error> {
    let mut files = Vec::new();
    for (_, public, private) in SHARED_KUBEADM_PKI {
        let (public_pem, private_pem) = match public {
            "sa.pub" => {
                let key = KeyPair::generate()?;
                (key.public_key_pem(), key.serialize_pem())
            }
            _ => {
                let name = match public {
                    "ca.crt" => Flavor::Kubeadm.ca_name(),
                    "front-proxy-ca.crt" => "front-proxy-ca",
                    _ => "etcd-ca",
                };
                let ca = named_ca(name)?;
                (ca.cert_pem, ca.key_pem)
            }
        };
        files.push((public, public_pem));
        files.push((private, private_pem));
    }
    Ok(files)
}

/// Issue the serving and admin certificates under `ca` (made with `flavor`)
/// for this node.
pub fn issue(
    ca: &CaPem,
    flavor: Flavor,
    hostname: &str,
    ips: &[IpAddr],
    tls_sans: &[String],
) -> Result<Pki, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    // Same subject and key as the CA certificate: leaves chain to it.
    let issuer = Issuer::new(ca_params(flavor.ca_name()), ca_key);

    let mut sans: Vec<SanType> = Vec::new();
    let add_name = |s: &str, sans: &mut Vec<SanType>| {
        let san = match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => match s.try_into() {
                Ok(name) => SanType::DnsName(name),
                Err(_) => return,
            },
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    for name in [
        hostname,
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
    ] {
        add_name(name, &mut sans);
    }
    add_name("127.0.0.1", &mut sans);
    for ip in ips {
        add_name(&ip.to_string(), &mut sans);
    }
    for san in tls_sans {
        add_name(san, &mut sans);
    }

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(Vec::<String>::new())?;
    serving
        .distinguished_name
        .push(DnType::CommonName, flavor.serving_name());
    serving.subject_alt_names = sans;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    let (admin_name, admin_group) = flavor.admin_subject();
    admin
        .distinguished_name
        .push(DnType::CommonName, admin_name);
    admin
        .distinguished_name
        .push(DnType::OrganizationName, admin_group);
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    admin.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let admin_cert = admin.signed_by(&admin_key, &issuer)?;

    Ok(Pki {
        ca: ca.clone(),
        serving_cert_pem: serving_cert.pem(),
        serving_key_pem: serving_key.serialize_pem(),
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    })
}

/// k3s's kubeconfig: cluster, context and user all named `default`, data embedded as base64.
pub fn kubeconfig_yaml(pki: &Pki, port: u16) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:{port}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = base64(pki.ca.cert_pem.as_bytes()),
        cert = base64(pki.admin_cert_pem.as_bytes()),
        key = base64(pki.admin_key_pem.as_bytes()),
    )
}

pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn issues_chain_under_shared_ca() {
        let ca = super::new_ca(super::Flavor::K3s).unwrap();
        let pki = super::issue(
            &ca,
            super::Flavor::K3s,
            "node-a",
            &["10.0.0.2".parse().unwrap()],
            &["api.example".into()],
        )
        .unwrap();
        assert!(pki.serving_cert_pem.contains("BEGIN CERTIFICATE"));
        let yaml = super::kubeconfig_yaml(&pki, 6443);
        assert!(yaml.contains("server: https://127.0.0.1:6443"));
    }

    fn ders(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn shared_kubeadm_pki_is_every_file_kind_copies() {
        let files = super::shared_kubeadm_pki().unwrap();
        let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [
                "ca.crt",
                "ca.key",
                "sa.pub",
                "sa.key",
                "front-proxy-ca.crt",
                "front-proxy-ca.key",
                "etcd/ca.crt",
                "etcd/ca.key"
            ]
        );
        for (path, pem) in &files {
            let header = match *path {
                p if p.ends_with(".crt") => "-----BEGIN CERTIFICATE-----",
                "sa.pub" => "-----BEGIN PUBLIC KEY-----",
                _ => "-----BEGIN PRIVATE KEY-----",
            };
            assert!(pem.starts_with(header), "{path}: {pem}");
            if path.ends_with(".key") {
                rcgen::KeyPair::from_pem(pem).unwrap();
            }
        }
        // three distinct CAs
        let certs: std::collections::BTreeSet<&String> = files
            .iter()
            .filter(|(p, _)| p.ends_with(".crt"))
            .map(|(_, pem)| pem)
            .collect();
        assert_eq!(certs.len(), 3);
    }

    /// A control plane that joins with the copied CA serves a certificate that
    /// a client trusting that CA accepts under the load balancer's name, and
    /// accepts the admin certificate the first control plane issued.
    #[test]
    fn certificates_issued_under_a_copied_ca_chain_to_it() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};
        let files = super::shared_kubeadm_pki().unwrap();
        let pem = |name: &str| files.iter().find(|(p, _)| *p == name).unwrap().1.clone();
        // what kind copies: the PEM text, nothing else
        let copied = super::CaPem {
            cert_pem: pem("ca.crt"),
            key_pem: pem("ca.key"),
        };
        let first =
            super::issue(&copied, super::Flavor::Kubeadm, "c-control-plane", &[], &[]).unwrap();
        let second = super::issue(
            &copied,
            super::Flavor::Kubeadm,
            "c-control-plane2",
            &["172.18.0.3".parse().unwrap()],
            &["c-external-load-balancer".into()],
        )
        .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ders(&copied.cert_pem).remove(0)).unwrap();
        let roots = std::sync::Arc::new(roots);
        let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .unwrap();
        for name in [
            "c-external-load-balancer",
            "c-control-plane2",
            "127.0.0.1",
            "172.18.0.3",
        ] {
            servers
                .verify_server_cert(
                    &ders(&second.serving_cert_pem)[0],
                    &[],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .unwrap();
        clients
            .verify_client_cert(&ders(&first.admin_cert_pem)[0], &[], UnixTime::now())
            .unwrap();
        // another cluster's CA is not trusted
        let other = super::new_ca(super::Flavor::Kubeadm).unwrap();
        let stranger = super::issue(&other, super::Flavor::Kubeadm, "x", &[], &[]).unwrap();
        assert!(clients
            .verify_client_cert(&ders(&stranger.admin_cert_pem)[0], &[], UnixTime::now())
            .is_err());
    }
}
