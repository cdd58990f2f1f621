//! k3s's command line as k3d passes it: `server …` or `agent …` followed by flags.
//! Flags the simulator does not model are accepted and ignored, as the real k3s
//! would act on them without the caller seeing a difference in the node's API.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Agent,
}

#[derive(Debug, Clone)]
pub struct Args {
    pub role: Role,
    pub tls_sans: Vec<String>,
    pub cluster_init: bool,
    pub node_labels: BTreeMap<String, String>,
    pub https_port: u16,
    pub disabled: Vec<String>,
    pub server_url: Option<String>,
    pub token: Option<String>,
}

/// Flags of k3s that take no value; every other unknown `--flag` followed by a
/// non-flag word takes that word as its value.
const BOOL_FLAGS: &[&str] = &[
    "--cluster-init",
    "--disable-network-policy",
    "--disable-helm-controller",
    "--disable-cloud-controller",
    "--disable-kube-proxy",
    "--disable-scheduler",
    "--write-kubeconfig-mode-skip",
    "--debug",
    "--rootless",
    "--secrets-encryption",
    "--prefer-bundled-bin",
    "--protect-kernel-defaults",
    "--selinux",
];

pub fn parse(argv: &[String]) -> Result<Args, String> {
    let mut it = argv.iter().peekable();
    let role = match it.next().map(String::as_str) {
        Some("server") => Role::Server,
        Some("agent") => Role::Agent,
        Some(other) => {
            return Err(format!(
                "unknown command {other:?}: expected server or agent"
            ))
        }
        None => return Err("missing command: expected server or agent".into()),
    };
    let mut args = Args {
        role,
        tls_sans: Vec::new(),
        cluster_init: false,
        node_labels: BTreeMap::new(),
        https_port: 6443,
        disabled: Vec::new(),
        server_url: None,
        token: None,
    };
    while let Some(word) = it.next() {
        if !word.starts_with('-') {
            // a stray positional word: k3s would reject it, we only ignore it
            continue;
        }
        let (flag, inline) = match word.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (word.clone(), None),
        };
        let value = |it: &mut std::iter::Peekable<std::slice::Iter<String>>| -> Option<String> {
            if inline.is_some() {
                return inline.clone();
            }
            if BOOL_FLAGS.contains(&flag.as_str()) {
                return None;
            }
            match it.peek() {
                Some(next) if !next.starts_with('-') => it.next().cloned(),
                _ => None,
            }
        };
        match flag.as_str() {
            "--tls-san" => args.tls_sans.extend(value(&mut it)),
            "--cluster-init" => args.cluster_init = true,
            "--node-label" => {
                if let Some((k, v)) = value(&mut it).as_deref().and_then(|l| l.split_once('=')) {
                    args.node_labels.insert(k.to_string(), v.to_string());
                }
            }
            "--https-listen-port" => {
                let v = value(&mut it).unwrap_or_default();
                args.https_port = v
                    .parse()
                    .map_err(|_| format!("invalid --https-listen-port {v:?}"))?;
            }
            "--disable" => args.disabled.extend(value(&mut it)),
            "--server" | "-s" => args.server_url = value(&mut it),
            "--token" | "-t" => args.token = value(&mut it),
            _ => {
                let _ = value(&mut it);
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_known_and_ignores_unknown_flags() {
        let a = parse(&argv(
            "server --tls-san 127.0.0.1 --tls-san=api.local --cluster-init --foo bar --baz=1 \
             --node-label kecs.io/cluster=x --disable=traefik --disable servicelb --flag-alone \
             --https-listen-port 7443",
        ))
        .unwrap();
        assert_eq!(a.role, Role::Server);
        assert_eq!(a.tls_sans, vec!["127.0.0.1", "api.local"]);
        assert!(a.cluster_init);
        assert_eq!(a.node_labels["kecs.io/cluster"], "x");
        assert_eq!(a.disabled, vec!["traefik", "servicelb"]);
        assert_eq!(a.https_port, 7443);
    }

    #[test]
    fn rejects_missing_role() {
        assert!(parse(&[]).is_err());
        assert!(parse(&argv("etcd")).is_err());
        assert_eq!(parse(&argv("agent")).unwrap().role, Role::Agent);
    }
}
