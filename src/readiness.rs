//! Kubernetes-side readiness, common to both providers: the API answers and every
//! expected node reports Ready. Probed with short, growing pauses (20 ms up to
//! 250 ms) after the log lines have already said the node is up, so this
//! normally succeeds on the first or second try.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::guard::Guard;

pub async fn client(kubeconfig_yaml: &str, request_timeout: Duration) -> Result<kube::Client> {
    let kc = Kubeconfig::from_yaml(kubeconfig_yaml)
        .map_err(|e| Error::Kubernetes(format!("parsing the cluster's kubeconfig: {e}")))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubernetes(format!("loading the cluster's kubeconfig: {e}")))?;
    cfg.connect_timeout = Some(request_timeout);
    cfg.read_timeout = Some(request_timeout);
    cfg.write_timeout = Some(request_timeout);
    kube::Client::try_from(cfg).map_err(|e| Error::kube("building a Kubernetes client", e))
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the API lists at least `expected` nodes and all of them are Ready;
/// returns the client (its connection stays open for a follow-up request).
pub async fn wait_nodes_ready(
    kubeconfig_yaml: &str,
    expected: usize,
    guard: &Guard,
) -> Result<kube::Client> {
    let step = format!("waiting for {expected} Ready node(s) through the Kubernetes API");
    let client = client(kubeconfig_yaml, Duration::from_secs(5)).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut pause = Duration::from_millis(20);
    let mut last = String::from("no answer yet");
    loop {
        let attempt = guard
            .wait(&step, async {
                Ok(nodes.list(&ListParams::default()).await)
            })
            .await;
        let attempt = match attempt {
            Ok(r) => r,
            Err(e) if e.code() == ErrorCode::Timeout => {
                return Err(Error::Timeout(format!("{e} (last seen: {last})")))
            }
            Err(e) => return Err(e),
        };
        match attempt {
            Ok(list) => {
                let ready: Vec<&str> = list
                    .items
                    .iter()
                    .filter(|n| is_ready(n))
                    .filter_map(|n| n.metadata.name.as_deref())
                    .collect();
                if list.items.len() >= expected && ready.len() == list.items.len() {
                    return Ok(client);
                }
                last = format!("{} of {} node(s) Ready: {:?}", ready.len(), expected, ready);
            }
            Err(e) => last = format!("API error: {e}"),
        }
        let slept = guard
            .wait(&step, async {
                tokio::time::sleep(pause).await;
                Ok(())
            })
            .await;
        if let Err(e) = slept {
            return Err(if e.code() == ErrorCode::Timeout {
                Error::Timeout(format!("{e} (last seen: {last})"))
            } else {
                e
            });
        }
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The API server's `gitVersion` through an existing client; empty if it fails.
pub async fn version_of(client: &kube::Client) -> String {
    match tokio::time::timeout(Duration::from_secs(2), client.apiserver_version()).await {
        Ok(Ok(v)) => v.git_version,
        _ => String::new(),
    }
}

/// The API server's `gitVersion` (e.g. `v1.31.4+k3s1`).
pub async fn server_version(kubeconfig_yaml: &str, timeout: Duration) -> Result<String> {
    let client = client(kubeconfig_yaml, timeout).await?;
    let v = tokio::time::timeout(timeout, client.apiserver_version())
        .await
        .map_err(|_| Error::Timeout("asking the API server for /version".into()))?
        .map_err(|e| Error::kube("asking the API server for /version", e))?;
    Ok(v.git_version)
}
