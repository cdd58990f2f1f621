//! Merging a cluster's entries into a kubeconfig file the user owns (k3d's
//! "update default kubeconfig") and taking them out again.
//!
//! The file is changed under the lock kubectl (client-go) and kind take: the
//! file `<file>.lock`, created exclusively and removed afterwards. Holding it,
//! we read the file, change it in memory and replace it atomically (a temporary
//! file with mode 0600 in the same directory, then a rename), so a concurrent
//! `kubectl config …` neither loses our change nor makes us lose its change, and
//! a reader never sees half a file.
//!
//! Our entries carry an extension named `kecs-cluster` (in the `extensions`
//! list of their `cluster:`, `user:` and `context:` bodies, where kubeconfig
//! keeps extensions) holding `{provider, cluster}`; the context's also records
//! the `current-context` it replaced. That marker is how
//! a file "we merged into" is recognised: un-merging removes exactly the
//! entries carrying our marker for that cluster and provider, nothing else.
//! kubectl keeps extensions when it rewrites a file (minikube marks its entries
//! the same way).

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::guard::Guard;

/// How long a merge waits for `<file>.lock` held by someone else. kubectl holds
/// it for milliseconds; a lock older than this was most likely left by a writer
/// that crashed, which only a human can tell.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The extension name that marks an entry as ours.
const MARKER: &str = "kecs-cluster";

/// Whose entries: our marker's content.
pub struct Owner<'a> {
    pub provider: &'a str,
    pub cluster: &'a str,
}

/// The three lists of a kubeconfig, in the order entries are merged.
const LISTS: [(&str, &str); 3] = [
    ("clusters", "cluster"),
    ("users", "user"),
    ("contexts", "context"),
];

/// Merges the cluster, user and context of `ours` (a kubeconfig with one of
/// each) into `target` under the lock. See [`merge_doc`] for the rules.
pub async fn merge_into(
    target: &Path,
    ours: &str,
    owner: &Owner<'_>,
    switch_context: bool,
    guard: &Guard,
) -> Result<()> {
    let ours = parse(ours, "the cluster's kubeconfig")?;
    let _lock = FileLock::acquire(target, guard).await?;
    let mut doc = read(target)?.unwrap_or(Value::Null);
    merge_doc(&mut doc, &ours, owner, switch_context)
        .map_err(|e| e.context(format!("merging into kubeconfig {}", target.display())))?;
    write(target, &doc)?;
    guard.report(&format!(
        "merged kubeconfig entries into {}{}",
        target.display(),
        if switch_context {
            " and switched the current context"
        } else {
            ""
        }
    ));
    Ok(())
}

/// Removes our entries (see the module doc) from `target` under the lock.
/// A missing file, or one without our entries, is left untouched. Returns
/// whether anything was removed.
pub async fn unmerge_from(target: &Path, owner: &Owner<'_>, guard: &Guard) -> Result<bool> {
    if !target.exists() {
        return Ok(false);
    }
    // a file with nothing of ours is not even locked (a delete must not wait
    // on, or leave a lock file next to, a kubeconfig it never merged into)
    let ours = match read(target) {
        Ok(Some(mut peek)) => unmerge_doc(&mut peek, owner).unwrap_or(true),
        Ok(None) => false,
        Err(_) => true,
    };
    if !ours {
        return Ok(false);
    }
    let _lock = FileLock::acquire(target, guard).await?;
    let Some(mut doc) = read(target)? else {
        return Ok(false);
    };
    if !unmerge_doc(&mut doc, owner)
        .map_err(|e| e.context(format!("un-merging from kubeconfig {}", target.display())))?
    {
        return Ok(false);
    }
    write(target, &doc)?;
    guard.report(&format!(
        "removed the cluster's kubeconfig entries from {}",
        target.display()
    ));
    Ok(true)
}

/// The file `kubectl` uses when given no `--kubeconfig`: the first entry of
/// `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_path(env: impl Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(first) = env("KUBECONFIG")
        .as_deref()
        .and_then(|list| list.split(':').find(|p| !p.is_empty()))
    {
        return Ok(PathBuf::from(first));
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".kube").join("config")),
        None => Err(Error::InvalidArgument(
            "no default kubeconfig: neither KUBECONFIG nor HOME is set; give a file".into(),
        )),
    }
}

fn parse(yaml: &str, what: &str) -> Result<Value> {
    if yaml.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str::<Value>(yaml)
        .map_err(|e| Error::InvalidArgument(format!("{what} is not valid YAML: {e}")))
}

/// The file's content; None when it does not exist.
fn read(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &format!("kubeconfig {}", path.display())).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(
            format!("reading kubeconfig {}", path.display()),
            e,
        )),
    }
}

/// Replaces the file atomically. A symlink is followed (the rename replaces
/// the file it points to, not the link).
fn write(path: &Path, doc: &Value) -> Result<()> {
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.prefer_block_scalars = false;
    let text = serde_saphyr::to_string_with_options(doc, opts)
        .map_err(|e| Error::Internal(format!("serialising kubeconfig: {e}")))?;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    super::write_atomic(&real, &text)
}

/// The body of a named entry (`cluster:`, `user:` or `context:`): where
/// kubeconfig keeps an entry's extensions.
fn body_key(entry: &Value) -> &'static str {
    ["cluster", "user", "context"]
        .into_iter()
        .find(|k| entry.get(k).is_some_and(Value::is_object))
        .unwrap_or("cluster")
}

fn marker(entry: &Value) -> Option<&Map<String, Value>> {
    entry
        .get(body_key(entry))?
        .get("extensions")?
        .as_array()?
        .iter()
        .find(|e| e["name"] == MARKER)?
        .get("extension")?
        .as_object()
}

fn is_ours(entry: &Value, owner: &Owner<'_>) -> bool {
    // the marker is in the user's file: any shape, never a panic
    marker(entry).is_some_and(|m| {
        m.get("provider").and_then(Value::as_str) == Some(owner.provider)
            && m.get("cluster").and_then(Value::as_str) == Some(owner.cluster)
    })
}

/// `entry` with our marker (replacing any earlier one) carrying `extra`.
fn with_marker(entry: &Value, owner: &Owner<'_>, extra: Map<String, Value>) -> Value {
    let mut entry = entry.clone();
    if !entry.is_object() {
        return entry;
    }
    let mut ext = json!({"provider": owner.provider, "cluster": owner.cluster});
    ext.as_object_mut()
        .expect("an object literal")
        .extend(extra);
    let key = body_key(&entry);
    let body = &mut entry[key];
    if !body.is_object() {
        // no mapping body to carry extensions (a malformed entry): give it one
        *body = json!({});
    }
    let mut list: Vec<Value> = body["extensions"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["name"] != MARKER).cloned().collect())
        .unwrap_or_default();
    list.push(json!({"name": MARKER, "extension": ext}));
    body["extensions"] = Value::Array(list);
    entry
}

/// Whether an unmarked entry with our name says the same as ours: the same
/// API server and CA, the same credentials, or a context joining the same
/// cluster and user. Such an entry (k3d's, or a copy of our own file) is
/// replaced; any other is the user's and is never overwritten.
fn same_content(list: &str, existing: &Value, ours: &Value) -> bool {
    match list {
        "clusters" => ["server", "certificate-authority-data"]
            .iter()
            .all(|k| existing["cluster"][k] == ours["cluster"][k]),
        "users" => existing["user"] == ours["user"],
        _ => ["cluster", "user"]
            .iter()
            .all(|k| existing["context"][k] == ours["context"][k]),
    }
}

fn only_entry<'a>(doc: &'a Value, list: &str) -> Result<&'a Value> {
    match doc[list].as_array().map(Vec::as_slice) {
        Some([one]) => Ok(one),
        _ => Err(Error::Internal(format!(
            "the cluster's kubeconfig should have exactly one entry in {list}"
        ))),
    }
}

fn list_mut<'a>(doc: &'a mut Value, list: &str) -> Result<&'a mut Vec<Value>> {
    if doc[list].is_null() {
        doc[list] = json!([]);
    }
    doc[list]
        .as_array_mut()
        .ok_or_else(|| Error::InvalidArgument(format!("its {list} is not a list")))
}

/// Merges our three entries into `doc`:
/// - an entry with the same name is replaced, in place, when it is ours (our
///   marker, or the same content: [`same_content`]); one that is not ours
///   fails the merge (AlreadyExists) and nothing changes;
/// - every other entry and field is kept as it is;
/// - `current-context` changes only when `switch_context`; the one it replaced
///   is remembered in our context's marker so un-merging can restore it.
pub fn merge_doc(
    doc: &mut Value,
    ours: &Value,
    owner: &Owner<'_>,
    switch_context: bool,
) -> Result<()> {
    if doc.is_null() {
        *doc = json!({"apiVersion": "v1", "kind": "Config", "preferences": {}});
    }
    if !doc.is_object() {
        return Err(Error::InvalidArgument("it is not a YAML mapping".into()));
    }
    let mut updates = Vec::new();
    for (list, kind) in LISTS {
        let entry = only_entry(ours, list)?;
        let name = entry["name"].as_str().unwrap_or_default();
        let entries = list_mut(doc, list)?;
        let index = entries.iter().position(|e| e["name"] == name);
        let mut extra = Map::new();
        if let Some(i) = index {
            let existing = &entries[i];
            if !is_ours(existing, owner) && !same_content(list, existing, entry) {
                return Err(Error::AlreadyExists(format!(
                    "a {kind} entry named {name:?} exists and is not cluster {}'s \
                     (different {}): rename or remove it, or merge into another file",
                    owner.cluster,
                    match list {
                        "clusters" => "server or CA",
                        "users" => "credentials",
                        _ => "cluster or user",
                    }
                )));
            }
            if let Some(previous) = marker(existing).and_then(|m| m.get("previous-context")) {
                extra.insert("previous-context".into(), previous.clone());
            }
        }
        if list == "contexts" && switch_context {
            let current = doc["current-context"].as_str().unwrap_or_default();
            if !current.is_empty() && current != name {
                extra.insert("previous-context".into(), json!(current));
            }
        }
        updates.push((list, index, with_marker(entry, owner, extra)));
    }
    for (list, index, entry) in updates {
        let entries = list_mut(doc, list)?;
        match index {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
    }
    if switch_context {
        doc["current-context"] = ours["contexts"][0]["name"].clone();
    }
    Ok(())
}

/// Removes the entries carrying our marker; when `current-context` named one
/// of them it goes back to the context it replaced if that still exists, else
/// it becomes empty. Returns whether anything was removed.
pub fn unmerge_doc(doc: &mut Value, owner: &Owner<'_>) -> Result<bool> {
    if !doc.is_object() {
        return Ok(false);
    }
    let mut removed_contexts = Vec::new();
    let mut removed_any = false;
    for (list, _) in LISTS {
        let Some(entries) = doc.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        let before = entries.len();
        entries.retain(|e| {
            let ours = is_ours(e, owner);
            if ours && list == "contexts" {
                removed_contexts.push(e.clone());
            }
            !ours
        });
        removed_any |= entries.len() != before;
    }
    let current = doc["current-context"].as_str().unwrap_or_default();
    if let Some(ctx) = removed_contexts.iter().find(|c| c["name"] == current) {
        let previous = marker(ctx)
            .and_then(|m| m.get("previous-context"))
            .and_then(Value::as_str)
            .filter(|p| {
                doc["contexts"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|c| c["name"] == *p))
            })
            .unwrap_or_default()
            .to_string();
        doc["current-context"] = json!(previous);
    }
    Ok(removed_any)
}

/// `<file>.lock`, held: created with O_CREAT|O_EXCL (mode 0, as client-go and
/// kind create it) and removed when dropped, on every path out.
struct FileLock {
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock, waiting at most [`LOCK_WAIT`] while someone else holds
    /// it. The lock file has no notification, so the wait polls with a short
    /// backoff (1 ms doubling to 100 ms), as kind retries its own attempts.
    async fn acquire(target: &Path, guard: &Guard) -> Result<FileLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            super::create_dir(dir)?;
        }
        let started = std::time::Instant::now();
        let mut backoff = Duration::from_millis(1);
        loop {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o000)
                .open(&path);
            match created {
                Ok(_) => return Ok(FileLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("taking the kubeconfig lock {}", path.display()),
                        e,
                    ))
                }
            }
            if started.elapsed() >= LOCK_WAIT {
                return Err(Error::Timeout(format!(
                    "kubeconfig {} is locked: {} still exists after {}s (kubectl, kind or \
                     another kecs-cluster is writing it); the file was not changed. If none \
                     of them is running, a writer crashed and left the lock: remove {}",
                    target.display(),
                    path.display(),
                    LOCK_WAIT.as_secs(),
                    path.display()
                )));
            }
            if backoff == Duration::from_millis(1) {
                guard.report(&format!(
                    "waiting for the kubeconfig lock {} (at most {}s)",
                    path.display(),
                    LOCK_WAIT.as_secs()
                ));
            }
            guard
                .wait("waiting for the kubeconfig lock", async {
                    tokio::time::sleep(backoff).await;
                    Ok(())
                })
                .await?;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // nothing to do when it is already gone; it was ours (O_EXCL)
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Owner<'static> = Owner {
        provider: "k3d",
        cluster: "kecs-a",
    };

    fn ours(server: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "k3d-kecs-a", "cluster": {"server": server, "certificate-authority-data": "Q0E="}}],
            "users": [{"name": "admin@k3d-kecs-a", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
            "contexts": [{"name": "k3d-kecs-a", "context": {"cluster": "k3d-kecs-a", "user": "admin@k3d-kecs-a"}}],
            "current-context": "k3d-kecs-a",
        })
    }

    fn users_file() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "prod", "cluster": {"server": "https://prod:6443", "insecure-skip-tls-verify": true}}],
            "users": [{"name": "me", "user": {"token": "t"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me", "namespace": "web"}}],
            "current-context": "prod",
            "preferences": {"colors": true},
        })
    }

    #[test]
    fn merge_then_unmerge_restores_the_file() {
        let mut doc = users_file();
        merge_doc(&mut doc, &ours("https://127.0.0.1:1"), &OWNER, true).unwrap();
        assert_eq!(doc["current-context"], "k3d-kecs-a");
        assert_eq!(doc["clusters"].as_array().unwrap().len(), 2);
        assert!(is_ours(&doc["contexts"][1], &OWNER));
        // again: replaced in place, the remembered context kept
        merge_doc(&mut doc, &ours("https://127.0.0.1:2"), &OWNER, true).unwrap();
        assert_eq!(doc["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["clusters"][1]["cluster"]["server"],
            "https://127.0.0.1:2"
        );
        assert!(unmerge_doc(&mut doc, &OWNER).unwrap());
        assert_eq!(doc, users_file());
        assert!(!unmerge_doc(&mut doc, &OWNER).unwrap());
    }

    #[test]
    fn current_context_changes_only_when_asked() {
        let mut doc = users_file();
        merge_doc(&mut doc, &ours("https://127.0.0.1:1"), &OWNER, false).unwrap();
        assert_eq!(doc["current-context"], "prod");
        let mut empty = Value::Null;
        merge_doc(&mut empty, &ours("https://127.0.0.1:1"), &OWNER, false).unwrap();
        assert!(empty.get("current-context").is_none());
    }

    #[test]
    fn a_foreign_entry_with_our_name_is_an_error() {
        let mut doc = users_file();
        doc["clusters"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "k3d-kecs-a", "cluster": {"server": "https://elsewhere:6443"}}));
        let before = doc.clone();
        let err = merge_doc(&mut doc, &ours("https://127.0.0.1:1"), &OWNER, true).unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::AlreadyExists);
        assert!(err.to_string().contains("k3d-kecs-a"), "{err}");
        assert_eq!(doc, before);
        // the same content unmarked (k3d's own merge, a copy of our file) is ours
        let mut doc = users_file();
        let same = ours("https://127.0.0.1:1");
        for list in ["clusters", "users", "contexts"] {
            let entry = same[list][0].clone();
            doc[list].as_array_mut().unwrap().push(entry);
        }
        merge_doc(&mut doc, &same, &OWNER, false).unwrap();
        assert_eq!(doc["users"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn another_providers_entries_are_not_ours() {
        let mut doc = users_file();
        merge_doc(&mut doc, &ours("https://127.0.0.1:1"), &OWNER, true).unwrap();
        let kind = Owner {
            provider: "kind",
            cluster: "kecs-a",
        };
        assert!(!unmerge_doc(&mut doc, &kind).unwrap());
        assert_eq!(doc["current-context"], "k3d-kecs-a");
    }

    #[test]
    fn default_path_follows_kubectl() {
        let env = |kc: Option<&'static str>| {
            move |k: &str| match k {
                "KUBECONFIG" => kc.map(String::from),
                "HOME" => Some("/home/u".into()),
                _ => None,
            }
        };
        assert_eq!(
            default_path(env(None)).unwrap(),
            Path::new("/home/u/.kube/config")
        );
        assert_eq!(
            default_path(env(Some(":/a/one:/b/two"))).unwrap(),
            Path::new("/a/one")
        );
        assert_eq!(
            default_path(|_| None).unwrap_err().code(),
            crate::ErrorCode::InvalidArgument
        );
    }
}
