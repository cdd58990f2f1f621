//! The node's certificates, made at boot as k3s makes them: a cluster CA, a serving
//! certificate for the API, and an admin client certificate for the kubeconfig.

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

const CA_CN: &str = "k3s-server-ca";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

pub fn new_ca() -> Result<CaPem, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issue the serving and admin certificates under `ca` for this node.
pub fn issue(
    ca: &CaPem,
    hostname: &str,
    ips: &[IpAddr],
    tls_sans: &[String],
) -> Result<Pki, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    // Same subject and key as the CA certificate: leaves chain to it.
    let issuer = Issuer::new(ca_params(), ca_key);

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
    serving.distinguished_name.push(DnType::CommonName, "k3s");
    serving.subject_alt_names = sans;
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving_cert = serving.signed_by(&serving_key, &issuer)?;

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin
        .distinguished_name
        .push(DnType::CommonName, "system:admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
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
        let ca = super::new_ca().unwrap();
        let pki = super::issue(
            &ca,
            "node-a",
            &["10.0.0.2".parse().unwrap()],
            &["api.example".into()],
        )
        .unwrap();
        assert!(pki.serving_cert_pem.contains("BEGIN CERTIFICATE"));
        let yaml = super::kubeconfig_yaml(&pki, 6443);
        assert!(yaml.contains("server: https://127.0.0.1:6443"));
    }
}
