//! Kubeconfig handling: rewriting the file a node writes (names and server URL),
//! writing it atomically with mode 0600, and removing only files we wrote;
//! merging a cluster's entries into the user's kubeconfig under kubectl's lock
//! (`merge`). Works on a generic YAML tree so fields we do not know survive
//! unchanged.

pub(crate) mod merge;

pub use merge::{default_path, LOCK_WAIT};

/// The pure part of the merge, on parsed documents (for the fuzz targets).
#[doc(hidden)]
pub mod merge_pure {
    pub use super::merge::{merge_doc, unmerge_doc, Owner};
}

use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The names a cluster's kubeconfig entries get (`k3d-<c>` / `admin@k3d-<c>`, or
/// `kind-<c>` for kind).
#[derive(Debug, Clone)]
pub struct EntryNames {
    pub cluster: String,
    pub context: String,
    pub user: String,
}

fn parse(yaml: &str) -> Result<Value> {
    serde_saphyr::from_str::<Value>(yaml)
        .map_err(|e| Error::Internal(format!("kubeconfig from the node is not valid YAML: {e}")))
}

/// The first entry of `list`, a mapping whose `body` (`cluster:`, `user:`,
/// `context:`) is a mapping too (made empty when absent): anything else is a
/// malformed kubeconfig, an error rather than a panic on assignment.
fn first_entry<'a>(doc: &'a mut Value, list: &str, body: &str) -> Result<&'a mut Value> {
    let malformed = || Error::Internal(format!("kubeconfig from the node has no {list}"));
    // Only the first entry is the cluster's (k3s and kubeadm write one): any
    // other would be merged into the user's file under a name not ours.
    let entry = doc
        .get_mut(list)
        .and_then(Value::as_array_mut)
        .and_then(|a| {
            a.truncate(1);
            a.first_mut()
        })
        .filter(|e| e.is_object())
        .ok_or_else(malformed)?;
    let inner = &mut entry[body];
    if inner.is_null() {
        *inner = json!({});
    }
    if !inner.is_object() {
        return Err(Error::Internal(format!(
            "kubeconfig from the node: the first of its {list} has a {body} that is not a mapping"
        )));
    }
    Ok(entry)
}

/// Renames the kubeconfig's (single) cluster, context and user and points the
/// cluster at `server`.
pub fn rewrite(raw: &str, names: &EntryNames, server: &str) -> Result<String> {
    let mut doc = parse(raw)?;
    {
        let cluster = first_entry(&mut doc, "clusters", "cluster")?;
        cluster["name"] = json!(names.cluster);
        cluster["cluster"]["server"] = json!(server);
    }
    first_entry(&mut doc, "users", "user")?["name"] = json!(names.user);
    {
        let ctx = first_entry(&mut doc, "contexts", "context")?;
        ctx["name"] = json!(names.context);
        ctx["context"]["cluster"] = json!(names.cluster);
        ctx["context"]["user"] = json!(names.user);
    }
    doc["current-context"] = json!(names.context);
    // plain scalars, as kubectl writes them (no folded block style for long data)
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(&doc, opts)
        .map_err(|e| Error::Internal(format!("serialising kubeconfig: {e}")))
}

/// The server URL of the kubeconfig's current (or first) cluster.
pub fn server_url(yaml: &str) -> Option<String> {
    let doc = parse(yaml).ok()?;
    doc.get("clusters")?.as_array()?.first()?["cluster"]["server"]
        .as_str()
        .map(String::from)
}

/// Does this kubeconfig contain a cluster entry named `cluster`?
pub fn has_cluster_entry(yaml: &str, cluster: &str) -> bool {
    let Ok(doc) = parse(yaml) else { return false };
    doc.get("clusters")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|c| c["name"].as_str() == Some(cluster)))
}

/// Creates a kubeconfig directory (and its parents) with mode 0755.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| {
            Error::io(
                format!("creating kubeconfig directory {}", dir.display()),
                e,
            )
        })
}

/// Writes `content` to `path` atomically: a temporary file (mode 0600) in the same
/// directory, then a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, content: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "kubeconfig path {} has no directory",
            path.display()
        ))
    })?;
    create_dir(dir)?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| Error::Internal(format!("OS random source: {e}")))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kubeconfig"),
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // no fsync, as kubectl and k3d write kubeconfigs: the rename keeps
        // readers from ever seeing a partial file
        f.write_all(content.as_bytes())?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("writing kubeconfig {}", path.display()), e)
    })
}

/// Removes `path` only if it is a kubeconfig with a cluster entry named `cluster`:
/// a file of the user's that merely has the same name is left alone.
/// Returns whether a file was removed.
pub fn remove_if_ours(path: &Path, cluster: &str) -> Result<bool> {
    let content = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::io(
                format!("reading kubeconfig {}", path.display()),
                e,
            ))
        }
    };
    if !has_cluster_entry(&content, cluster) {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(
            format!("removing kubeconfig {}", path.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

    fn names() -> EntryNames {
        EntryNames {
            cluster: "k3d-kecs-a".into(),
            context: "k3d-kecs-a".into(),
            user: "admin@k3d-kecs-a".into(),
        }
    }

    #[test]
    fn rewrites_names_and_server() {
        let out = rewrite(K3S, &names(), "https://127.0.0.1:40000").unwrap();
        let doc: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(doc["clusters"][0]["name"], "k3d-kecs-a");
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:40000"
        );
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(doc["users"][0]["name"], "admin@k3d-kecs-a");
        assert_eq!(doc["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(doc["contexts"][0]["context"]["user"], "admin@k3d-kecs-a");
        assert_eq!(doc["current-context"], "k3d-kecs-a");
        assert_eq!(server_url(&out).as_deref(), Some("https://127.0.0.1:40000"));
        assert!(
            !out.contains(">-") && !out.contains("|-"),
            "plain scalars only:\n{out}"
        );
        // kube-rs accepts the result
        kube::config::Kubeconfig::from_yaml(&out).unwrap();
    }

    /// Found by the kubeconfig_merge fuzz target: a node file with two clusters
    /// kept the second under its own name, and the merge then refused it.
    #[test]
    fn keeps_only_the_first_entry_of_each_list() {
        let two = K3S.replace(
            "  name: default\ncontexts:",
            "  name: default\n- cluster:\n    server: https://prod:6443\n  name: prod\ncontexts:",
        );
        assert_ne!(two, K3S);
        let out = rewrite(&two, &names(), "https://127.0.0.1:40000").unwrap();
        let doc: Value = serde_saphyr::from_str(&out).unwrap();
        for list in ["clusters", "users", "contexts"] {
            assert_eq!(doc[list].as_array().unwrap().len(), 1, "{list}:\n{out}");
        }
        assert_eq!(doc["clusters"][0]["name"], "k3d-kecs-a");
    }

    #[test]
    fn rejects_garbage() {
        assert!(rewrite("::: not yaml [", &names(), "https://x:1").is_err());
        assert!(rewrite("apiVersion: v1\nclusters: []\n", &names(), "https://x:1").is_err());
    }

    #[test]
    fn atomic_write_mode_and_owned_removal() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kecs-kc-test-{}", std::process::id()));
        let path = dir.join("sub").join("kecs-a.config");
        let out = rewrite(K3S, &names(), "https://127.0.0.1:1").unwrap();
        write_atomic(&path, &out).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // a foreign file with the same name is never removed
        let foreign = dir.join("foreign.config");
        std::fs::write(&foreign, K3S).unwrap();
        assert!(!remove_if_ours(&foreign, "k3d-kecs-a").unwrap());
        assert!(foreign.exists());
        assert!(remove_if_ours(&path, "k3d-kecs-a").unwrap());
        assert!(!path.exists());
        assert!(!remove_if_ours(&path, "k3d-kecs-a").unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
