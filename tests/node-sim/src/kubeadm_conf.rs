//! The few values the simulated `kubeadm` reads from kind's `/kind/kubeadm.conf`:
//! a line scan of its `---`-separated documents that follows the indentation,
//! since kind writes one `key: value` per line (block style, no flow mappings
//! around the keys read here).

#[derive(Debug, Default, Clone, PartialEq)]
pub struct KubeadmConf {
    pub cluster_name: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub api_server_endpoint: Option<String>,
    pub token: Option<String>,
    pub cert_sans: Vec<String>,
    pub service_subnet: Option<String>,
    /// The JoinConfiguration's `controlPlane.localAPIEndpoint`: present when the
    /// node joins as another control plane rather than as a worker.
    pub join_control_plane: Option<LocalApiEndpoint>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct LocalApiEndpoint {
    pub advertise_address: Option<String>,
    pub bind_port: Option<u16>,
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').trim_matches('\'').to_string()
}

pub fn parse(text: &str) -> KubeadmConf {
    let mut c = KubeadmConf::default();
    let mut doc = Document::default();
    for line in text.lines() {
        if line.trim_end() == "---" {
            doc.end(&mut c);
            doc = Document::default();
            continue;
        }
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // a sequence item's content starts after its dash: `- token: x` at
        // column 0 is a mapping under the key above it at column 0
        let mut column = line.len() - t.len();
        let mut item = t;
        while let Some(rest) = item.strip_prefix("- ") {
            column += 2 + (rest.len() - rest.trim_start().len());
            item = rest.trim_start();
        }
        while doc.open.last().is_some_and(|(c, _)| *c >= column) {
            doc.open.pop();
        }
        let path: Vec<&str> = doc.open.iter().map(|(_, k)| k.as_str()).collect();
        let Some((key, value)) = item
            .split_once(':')
            .filter(|(k, _)| !k.is_empty() && !k.contains(['"', '\'']))
        else {
            // a scalar sequence item
            if path == ["apiServer", "certSANs"] {
                c.cert_sans.push(unquote(item));
            }
            continue;
        };
        let (key, value) = (key.trim(), unquote(value));
        match (path.as_slice(), key) {
            ([], "kind") => doc.kind = value.clone(),
            ([], "clusterName") => c.cluster_name = Some(value.clone()),
            ([], "controlPlaneEndpoint") => c.control_plane_endpoint = Some(value.clone()),
            // `controlPlane: {}` (kubeadm's defaults) makes a control plane too
            ([], "controlPlane") => doc.control_plane = Some(Default::default()),
            (["networking"], "serviceSubnet") => c.service_subnet = Some(value.clone()),
            (["discovery", "bootstrapToken"], "apiServerEndpoint") => {
                c.api_server_endpoint = Some(value.clone())
            }
            (["bootstrapTokens"] | ["discovery", "bootstrapToken"], "token") => {
                c.token.get_or_insert(value.clone());
            }
            (["controlPlane", "localAPIEndpoint"], "advertiseAddress") => {
                doc.local_endpoint().advertise_address = Some(value.clone())
            }
            (["controlPlane", "localAPIEndpoint"], "bindPort") => {
                doc.local_endpoint().bind_port = value.parse().ok()
            }
            _ => {}
        }
        if value.is_empty() {
            doc.open.push((column, key.to_string()));
        }
    }
    doc.end(&mut c);
    c
}

/// What one document of the stream holds so far.
#[derive(Default)]
struct Document {
    kind: String,
    /// the mapping keys enclosing the current line, with the column each starts at
    open: Vec<(usize, String)>,
    control_plane: Option<LocalApiEndpoint>,
}

impl Document {
    fn local_endpoint(&mut self) -> &mut LocalApiEndpoint {
        self.control_plane.get_or_insert_with(Default::default)
    }

    /// `controlPlane` means a control-plane join only in a JoinConfiguration
    /// (its `kind` may come after it: kind re-encodes the documents key-sorted).
    fn end(self, c: &mut KubeadmConf) {
        if self.kind == "JoinConfiguration" && self.control_plane.is_some() {
            c.join_control_plane = self.control_plane;
        }
    }
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

    /// The library's kubeadm.conf for a secondary control plane: InitConfiguration
    /// has a top-level localAPIEndpoint too, which is not a control-plane join.
    const SECONDARY: &str = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nclusterName: \"kecs-a\"\ncontrolPlaneEndpoint: \"kecs-a-external-load-balancer:6443\"\nnetworking:\n  podSubnet: \"10.244.0.0/16\"\n  serviceSubnet: \"10.96.0.0/16\"\napiServer:\n  certSANs:\n  - \"localhost\"\n  - \"127.0.0.1\"\n---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nbootstrapTokens:\n- token: \"abcdef.0123456789abcdef\"\nlocalAPIEndpoint:\n  advertiseAddress: \"172.18.0.3\"\n  bindPort: 6443\nskipPhases:\n- preflight\n---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration:\n  criSocket: \"unix:///run/containerd/containerd.sock\"\n  kubeletExtraArgs:\n    node-ip: \"172.18.0.3\"\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: \"kecs-a-external-load-balancer:6443\"\n    token: \"abcdef.0123456789abcdef\"\n    unsafeSkipCAVerification: true\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"172.18.0.3\"\n    bindPort: 6443\nskipPhases:\n- preflight\n---\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n";

    #[test]
    fn reads_the_control_plane_join() {
        let c = super::parse(SECONDARY);
        assert_eq!(
            c.join_control_plane,
            Some(super::LocalApiEndpoint {
                advertise_address: Some("172.18.0.3".into()),
                bind_port: Some(6443),
            })
        );
        assert_eq!(
            c.api_server_endpoint.as_deref(),
            Some("kecs-a-external-load-balancer:6443")
        );
        assert_eq!(c.cert_sans, vec!["localhost", "127.0.0.1"]);
        assert_eq!(c.token.as_deref(), Some("abcdef.0123456789abcdef"));
    }

    #[test]
    fn a_worker_or_init_endpoint_is_no_control_plane_join() {
        let worker = SECONDARY.replace(
            "controlPlane:\n  localAPIEndpoint:\n    advertiseAddress: \"172.18.0.3\"\n    bindPort: 6443\n",
            "",
        );
        assert_ne!(worker, SECONDARY);
        let c = super::parse(&worker);
        assert_eq!(c.join_control_plane, None);
        assert_eq!(
            c.api_server_endpoint.as_deref(),
            Some("kecs-a-external-load-balancer:6443")
        );
    }

    /// kind re-encodes the documents key-sorted (`controlPlane` before `kind`),
    /// with sequences indented under their key; `controlPlane: {}` counts too.
    #[test]
    fn reads_key_sorted_documents() {
        let c = super::parse(
            "apiServer:\n  certSANs:\n    - localhost\n    - 127.0.0.1\napiVersion: kubeadm.k8s.io/v1beta3\nclusterName: kind\nkind: ClusterConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta3\ncontrolPlane:\n  localAPIEndpoint:\n    advertiseAddress: fc00:f853:ccd:e793::3\n    bindPort: 6443\ndiscovery:\n  bootstrapToken:\n    apiServerEndpoint: kind-external-load-balancer:6443\n    token: abcdef.0123456789abcdef\nkind: JoinConfiguration\n",
        );
        assert_eq!(c.cert_sans, vec!["localhost", "127.0.0.1"]);
        let cp = c.join_control_plane.unwrap();
        assert_eq!(
            cp.advertise_address.as_deref(),
            Some("fc00:f853:ccd:e793::3")
        );
        assert_eq!(cp.bind_port, Some(6443));
        let defaults = super::parse("kind: JoinConfiguration\ncontrolPlane: {}\n");
        assert_eq!(defaults.join_control_plane, Some(Default::default()));
        let init = super::parse("kind: InitConfiguration\ncontrolPlane:\n  x: y\n");
        assert_eq!(init.join_control_plane, None);
    }
}
