//! Manager configuration: the JSON/serde shape callers send, and its resolution
//! against the environment (`KECS_*`, `DOCKER_HOST`) into concrete settings.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

use crate::docker_host::{self, DockerEndpoint, DockerSettings};
use crate::error::{Error, Result};
use crate::names;

pub const DEFAULT_K3S_IMAGE: &str = "rancher/k3s:v1.31.4-k3s1";
pub const DEFAULT_KIND_IMAGE: &str = "kindest/node:v1.31.4";
/// k3d's server load balancer (the proxy image of the k3d release we follow).
pub const DEFAULT_LB_IMAGE: &str = "ghcr.io/k3d-io/k3d-proxy:5.8.3";
/// kind's external load balancer for several control planes (kind v0.32: envoy).
pub const DEFAULT_KIND_LB_IMAGE: &str = "docker.io/envoyproxy/envoy:v1.36.2";
pub const DEFAULT_NAME_PREFIX: &str = "kecs-";
pub const CONTAINER_MODE_KUBECONFIG_DIR: &str = "/kecs/kubeconfig";

/// What callers configure; every field is optional (camelCase JSON, the shape
/// the C ABI and Go take). An unset field comes from the environment
/// (`KECS_CLUSTER_PROVIDER`, `KECS_CONTAINER_MODE`, `KECS_KUBECONFIG_PATH`,
/// `KECS_K3S_IMAGE` / `KECS_KIND_IMAGE`, `KECS_LB_IMAGE` / `KECS_KIND_LB_IMAGE`,
/// `KECS_REGISTRY_IMAGE`, `KECS_PRIVILEGED`; the engine from `DOCKER_HOST`,
/// `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, `DOCKER_CONFIG`, `DOCKER_CONTEXT`),
/// else from the defaults; a set field always wins over the environment.
///
/// ```
/// use kecs_cluster::{ClusterManagerConfig, ProviderKind};
///
/// let config = ClusterManagerConfig::from_json(
///     r#"{"provider": "kind", "kubeconfigPath": "/tmp/kc", "privileged": false}"#,
/// )?;
/// // resolve() is what ClusterManager::new does with the process environment;
/// // here a fixed environment shows the order: set field, then $KECS_*, then default
/// let env = |key: &str| match key {
///     "KECS_KIND_IMAGE" => Some("example.test/kind-node:dev".to_string()),
///     "KECS_PRIVILEGED" => Some("true".to_string()),
///     _ => None,
/// };
/// let resolved = config.resolve(env)?;
/// assert_eq!(resolved.provider, ProviderKind::Kind);
/// assert_eq!(resolved.image, "example.test/kind-node:dev"); // unset: from the environment
/// assert!(!resolved.privileged); // set: wins over $KECS_PRIVILEGED
/// assert_eq!(resolved.name_prefix, "kecs-"); // neither: the default
///
/// // unknown fields are refused, not ignored
/// assert!(ClusterManagerConfig::from_json(r#"{"provder": "kind"}"#).is_err());
/// # Ok::<(), kecs_cluster::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterManagerConfig {
    /// "k3d" (default) or "kind".
    pub provider: Option<String>,
    /// KECS runs inside a container: kubeconfigs point at node names on the cluster network.
    pub container_mode: Option<bool>,
    /// Directory for `<cluster>.config` files.
    pub kubeconfig_path: Option<String>,
    /// Extra address the API certificate must cover (added as a `--tls-san`).
    pub host_address: Option<String>,
    pub name_prefix: Option<String>,
    pub image: Option<String>,
    /// The Docker Engine: `unix:///path`, a socket path, or `tcp://host:port`
    /// (default: $DOCKER_HOST, else the Docker context, else the local socket).
    pub docker_host: Option<String>,
    /// Speak TLS to a `tcp://` engine and verify it against `ca.pem`,
    /// presenting `cert.pem`/`key.pem` (default: whether $DOCKER_TLS_VERIFY is
    /// set to anything, as the Docker CLI reads it).
    pub docker_tls_verify: Option<bool>,
    /// Directory holding `ca.pem`, `cert.pem` and `key.pem` (default:
    /// $DOCKER_CERT_PATH, else the Docker config directory).
    pub docker_cert_path: Option<String>,
    /// The Docker CLI's config directory, for `config.json`'s `currentContext`
    /// and the contexts (default: $DOCKER_CONFIG, else ~/.docker).
    pub docker_config: Option<String>,
    /// A Docker context by name, used instead of $DOCKER_HOST (default:
    /// $DOCKER_CONTEXT, else `currentContext`); "default" is the local engine.
    /// Not together with `dockerHost`.
    pub docker_context: Option<String>,
    /// Host IP the API port is published on (default 127.0.0.1; with a remote
    /// engine, 0.0.0.0 and the kubeconfig points at the engine's host).
    pub api_host_ip: Option<String>,
    /// Run nodes privileged (default true, as k3s needs).
    pub privileged: Option<bool>,
    /// Image of the load balancer: k3d's server load balancer (default:
    /// $KECS_LB_IMAGE, else ghcr.io/k3d-io/k3d-proxy:5.8.3) or, for kind with
    /// several control planes, kind's external load balancer (default:
    /// $KECS_KIND_LB_IMAGE, else docker.io/envoyproxy/envoy:v1.36.2).
    pub lb_image: Option<String>,
    /// Image of the registries this manager creates (default:
    /// $KECS_REGISTRY_IMAGE, else docker.io/library/registry:2).
    pub registry_image: Option<String>,
    /// Every cluster uses KECS's shared registry `kecs-registry` (created on
    /// first use, standalone: no cluster delete removes it), mirrored as
    /// `localhost:<registryPort>` and `registry.kecs.local:<registryPort>`.
    pub enable_registry: Option<bool>,
    /// Host port of the shared registry (default 5000).
    pub registry_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    K3d,
    Kind,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::K3d => "k3d",
            ProviderKind::Kind => "kind",
        }
    }

    pub fn parse(s: &str) -> Result<ProviderKind> {
        match s {
            "k3d" => Ok(ProviderKind::K3d),
            "kind" => Ok(ProviderKind::Kind),
            other => Err(Error::InvalidArgument(format!(
                "unknown provider {other:?}: use \"k3d\" or \"kind\""
            ))),
        }
    }
}

/// Settings after defaults and the environment are applied.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    pub provider: ProviderKind,
    pub container_mode: bool,
    pub kubeconfig_dir: PathBuf,
    pub host_address: Option<String>,
    pub name_prefix: String,
    pub image: String,
    /// The engine and how to reach it (TLS, the context it came from).
    pub docker: DockerEndpoint,
    pub api_host_ip: IpAddr,
    pub privileged: bool,
    pub lb_image: String,
    pub registry_image: String,
    pub enable_registry: bool,
    pub registry_port: u16,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl ClusterManagerConfig {
    /// Parses the camelCase JSON the C ABI and Go send; unknown fields are an
    /// `InvalidArgument` error.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::InvalidArgument(format!("config JSON: {e}")))
    }

    /// Applies defaults and `env` (a lookup such as `std::env::var`) to unset fields.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Result<ResolvedConfig> {
        let env = |k: &str| non_empty(env(k));
        let provider =
            match non_empty(self.provider.clone()).or_else(|| env("KECS_CLUSTER_PROVIDER")) {
                Some(p) => ProviderKind::parse(p.trim())?,
                None => ProviderKind::K3d,
            };
        // An explicit setting wins (KECS passes false explicitly); unset, the
        // environment can switch it on.
        let container_mode = self
            .container_mode
            .unwrap_or_else(|| env("KECS_CONTAINER_MODE").is_some_and(|v| v == "true"));
        let kubeconfig_dir = match non_empty(self.kubeconfig_path.clone()).or_else(|| env("KECS_KUBECONFIG_PATH")) {
            Some(dir) => PathBuf::from(dir),
            None if container_mode => PathBuf::from(CONTAINER_MODE_KUBECONFIG_DIR),
            None => match env("HOME") {
                Some(home) => PathBuf::from(home).join(".kube"),
                None => {
                    return Err(Error::InvalidArgument(
                        "kubeconfigPath is not set and HOME is unset: set kubeconfigPath or KECS_KUBECONFIG_PATH".into(),
                    ))
                }
            },
        };
        let name_prefix = self
            .name_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME_PREFIX.into());
        names::validate_prefix(&name_prefix)?;
        let default_image = match provider {
            ProviderKind::K3d => env("KECS_K3S_IMAGE").unwrap_or_else(|| DEFAULT_K3S_IMAGE.into()),
            ProviderKind::Kind => {
                env("KECS_KIND_IMAGE").unwrap_or_else(|| DEFAULT_KIND_IMAGE.into())
            }
        };
        let image = non_empty(self.image.clone()).unwrap_or(default_image);
        validate_image(&image)?;
        // like the node image, the load balancer's default follows the provider
        let default_lb_image = match provider {
            ProviderKind::K3d => env("KECS_LB_IMAGE").unwrap_or_else(|| DEFAULT_LB_IMAGE.into()),
            ProviderKind::Kind => {
                env("KECS_KIND_LB_IMAGE").unwrap_or_else(|| DEFAULT_KIND_LB_IMAGE.into())
            }
        };
        let lb_image = non_empty(self.lb_image.clone()).unwrap_or(default_lb_image);
        validate_image(&lb_image)?;
        let registry_image = non_empty(self.registry_image.clone())
            .or_else(|| env("KECS_REGISTRY_IMAGE"))
            .unwrap_or_else(|| crate::registry::DEFAULT_REGISTRY_IMAGE.into());
        validate_image(&registry_image)?;
        let docker = docker_host::resolve(
            &DockerSettings {
                host: non_empty(self.docker_host.clone()),
                tls_verify: self.docker_tls_verify,
                cert_path: non_empty(self.docker_cert_path.clone()),
                config_dir: non_empty(self.docker_config.clone()),
                context: non_empty(self.docker_context.clone()),
            },
            &env,
        )?;
        let mut host_address = non_empty(self.host_address.clone());
        let api_host_ip = match non_empty(self.api_host_ip.clone()) {
            Some(ip) => ip.trim().parse().map_err(|_| {
                Error::InvalidArgument(format!("apiHostIp {ip:?} is not an IP address"))
            })?,
            // A remote engine publishes ports on its own host, where 127.0.0.1
            // is out of our reach: publish on every address (as k3d does) and
            // let the kubeconfig and the API certificate name the engine's host
            // (hostAddress, which an explicit setting still overrides).
            None => match docker.remote_host() {
                Some(remote) => {
                    host_address.get_or_insert_with(|| remote.to_string());
                    IpAddr::from([0, 0, 0, 0])
                }
                None => IpAddr::from([127, 0, 0, 1]),
            },
        };
        if let Some(h) = &host_address {
            if h.contains(char::is_whitespace) || h.contains('/') {
                return Err(Error::InvalidArgument(format!(
                    "hostAddress {h:?} must be a host name or IP address"
                )));
            }
        }
        Ok(ResolvedConfig {
            provider,
            container_mode,
            kubeconfig_dir,
            host_address,
            name_prefix,
            image,
            docker,
            api_host_ip,
            lb_image,
            registry_image,
            enable_registry: self.enable_registry.unwrap_or(false),
            registry_port: self.registry_port.filter(|p| *p != 0).unwrap_or(5000),
            privileged: match self.privileged {
                Some(p) => p,
                None => match env("KECS_PRIVILEGED").as_deref() {
                    Some("false") | Some("0") => false,
                    Some("true") | Some("1") | None => true,
                    Some(other) => {
                        return Err(Error::InvalidArgument(format!(
                            "KECS_PRIVILEGED={other:?}: use true or false"
                        )))
                    }
                },
            },
        })
    }
}

pub fn validate_image(image: &str) -> Result<()> {
    if image.is_empty() || image.contains(char::is_whitespace) || image.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "image {image:?} is not a valid image reference"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let r = ClusterManagerConfig::default()
            .resolve(env(&[("HOME", "/home/u")]))
            .unwrap();
        assert_eq!(r.provider, ProviderKind::K3d);
        assert!(!r.container_mode);
        assert_eq!(r.kubeconfig_dir, PathBuf::from("/home/u/.kube"));
        assert_eq!(r.name_prefix, "kecs-");
        assert_eq!(r.image, DEFAULT_K3S_IMAGE);
        assert_eq!(r.api_host_ip.to_string(), "127.0.0.1");
        assert!(r.privileged);
    }

    #[test]
    fn environment_fills_unset_fields() {
        let r = ClusterManagerConfig::default()
            .resolve(env(&[
                ("KECS_CLUSTER_PROVIDER", "kind"),
                ("KECS_CONTAINER_MODE", "true"),
                ("KECS_KUBECONFIG_PATH", "/data/kc"),
                ("DOCKER_HOST", "tcp://127.0.0.1:2375"),
            ]))
            .unwrap();
        assert_eq!(r.provider, ProviderKind::Kind);
        assert!(r.container_mode);
        assert_eq!(r.kubeconfig_dir, PathBuf::from("/data/kc"));
        // an explicit false wins over the environment
        let off = ClusterManagerConfig {
            container_mode: Some(false),
            ..Default::default()
        }
        .resolve(env(&[("KECS_CONTAINER_MODE", "true"), ("HOME", "/h")]))
        .unwrap();
        assert!(!off.container_mode);
        assert_eq!(r.docker.url, "tcp://127.0.0.1:2375");
        assert!(!r.docker.uses_tls());
        assert_eq!(r.image, DEFAULT_KIND_IMAGE);
        let r = ClusterManagerConfig::default()
            .resolve(env(&[("KECS_K3S_IMAGE", "x/y:z"), ("HOME", "/h")]))
            .unwrap();
        assert_eq!(r.image, "x/y:z");
        let r = ClusterManagerConfig::default()
            .resolve(env(&[("KECS_PRIVILEGED", "false"), ("HOME", "/h")]))
            .unwrap();
        assert!(!r.privileged);
        assert!(ClusterManagerConfig::default()
            .resolve(env(&[("KECS_PRIVILEGED", "maybe"), ("HOME", "/h")]))
            .is_err());
    }

    #[test]
    fn container_mode_default_dir_and_explicit_fields_win() {
        let cfg = ClusterManagerConfig {
            container_mode: Some(true),
            provider: Some("k3d".into()),
            ..Default::default()
        };
        let r = cfg
            .resolve(env(&[("KECS_CLUSTER_PROVIDER", "kind")]))
            .unwrap();
        assert_eq!(r.provider, ProviderKind::K3d);
        assert_eq!(
            r.kubeconfig_dir,
            PathBuf::from(CONTAINER_MODE_KUBECONFIG_DIR)
        );
    }

    #[test]
    fn remote_engine_publishes_the_api_on_its_host() {
        let remote = env(&[("HOME", "/h"), ("DOCKER_HOST", "tcp://192.0.2.3:2375")]);
        let r = ClusterManagerConfig::default().resolve(&remote).unwrap();
        assert_eq!(r.api_host_ip.to_string(), "0.0.0.0");
        assert_eq!(r.host_address.as_deref(), Some("192.0.2.3"));
        // explicit settings still win
        let r = ClusterManagerConfig {
            api_host_ip: Some("127.0.0.1".into()),
            ..Default::default()
        }
        .resolve(&remote)
        .unwrap();
        assert_eq!(r.api_host_ip.to_string(), "127.0.0.1");
        assert_eq!(r.host_address, None);
        let r = ClusterManagerConfig {
            host_address: Some("docker.example".into()),
            ..Default::default()
        }
        .resolve(&remote)
        .unwrap();
        assert_eq!(r.host_address.as_deref(), Some("docker.example"));
        // a loopback tcp:// engine is local: nothing changes
        let r = ClusterManagerConfig {
            docker_host: Some("tcp://127.0.0.1:2375".into()),
            ..Default::default()
        }
        .resolve(&remote)
        .unwrap();
        assert_eq!(r.api_host_ip.to_string(), "127.0.0.1");
        assert_eq!(r.host_address, None);
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            r#"{"provider":"minikube"}"#,
            r#"{"apiHostIp":"localhost"}"#,
            r#"{"namePrefix":"Bad_"}"#,
            r#"{"image":"a b"}"#,
        ];
        for json in bad {
            let cfg = ClusterManagerConfig::from_json(json).unwrap();
            assert!(cfg.resolve(env(&[("HOME", "/h")])).is_err(), "{json}");
        }
        let e = ClusterManagerConfig::from_json(r#"{"unknown":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown"), "{e}");
    }
}
