//! The few values the simulated `kubeadm` reads from kind's `/kind/kubeadm.conf`:
//! a line scan, since kind writes one `key: value` per line.

#[derive(Debug, Default, Clone, PartialEq)]
pub struct KubeadmConf {
    pub cluster_name: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub api_server_endpoint: Option<String>,
    pub token: Option<String>,
    pub cert_sans: Vec<String>,
    pub service_subnet: Option<String>,
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

pub fn parse(text: &str) -> KubeadmConf {
    let mut c = KubeadmConf::default();
    let mut in_sans = false;
    for line in text.lines() {
        let t = line.trim();
        if in_sans {
            if let Some(item) = t.strip_prefix("- ") {
                c.cert_sans.push(unquote(item));
                continue;
            }
            in_sans = false;
        }
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        let k = k.trim_start_matches("- ").trim();
        match k {
            "clusterName" => c.cluster_name = Some(unquote(v)),
            "controlPlaneEndpoint" => c.control_plane_endpoint = Some(unquote(v)),
            "apiServerEndpoint" => c.api_server_endpoint = Some(unquote(v)),
            "token" if c.token.is_none() => c.token = Some(unquote(v)),
            "certSANs" => in_sans = true,
            "serviceSubnet" => c.service_subnet = Some(unquote(v)),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_kind_values() {
        let c = super::parse(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nclusterName: \"kecs-a\"\ncontrolPlaneEndpoint: \"kecs-a-control-plane:6443\"\nnetworking:\n  serviceSubnet: \"10.96.0.0/16\"\napiServer:\n  certSANs:\n  - \"localhost\"\n  - \"127.0.0.1\"\n  extraArgs: {}\n---\nbootstrapTokens:\n- token: \"abcdef.0123456789abcdef\"\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: \"kecs-a-control-plane:6443\"\n    token: \"abcdef.0123456789abcdef\"\n",
        );
        assert_eq!(c.cluster_name.as_deref(), Some("kecs-a"));
        assert_eq!(
            c.control_plane_endpoint.as_deref(),
            Some("kecs-a-control-plane:6443")
        );
        assert_eq!(
            c.api_server_endpoint.as_deref(),
            Some("kecs-a-control-plane:6443")
        );
        assert_eq!(c.token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(c.cert_sans, vec!["localhost", "127.0.0.1"]);
        assert_eq!(c.service_subnet.as_deref(), Some("10.96.0.0/16"));
    }
}
