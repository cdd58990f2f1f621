//! Merging a cluster's entries into a kubeconfig the user owns, and taking
//! them out again: the pure part of `src/kubeconfig/merge.rs` (`merge_doc`,
//! `unmerge_doc`), which works on the parsed file; the file and its lock are
//! left out.
//!
//! Input: the user's kubeconfig, optionally followed by a NUL byte and the
//! node's kubeconfig (default: a k3s one), which is rewritten as a create
//! rewrites it before merging.
//!
//! Never a panic. A merge that succeeds leaves a mapping holding our entries,
//! that survives being written and read back, and from which un-merging
//! removes them again.
#![no_main]

use kecs_cluster::kubeconfig::{self, EntryNames};
use kecs_cluster::provider::k3d;
use kecs_cluster::ErrorCode;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use kecs_cluster::kubeconfig::merge_pure::{merge_doc, unmerge_doc, Owner};

const CLUSTER: &str = "kecs-fuzz";
const OWNER: Owner<'static> = Owner {
    provider: "k3d",
    cluster: CLUSTER,
};
const K3S: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

/// As merge.rs reads a file: blank is an empty kubeconfig.
fn parse(yaml: &str) -> Option<Value> {
    if yaml.trim().is_empty() {
        return Some(Value::Null);
    }
    serde_saphyr::from_str(yaml).ok()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (users, node) = text.split_once('\0').unwrap_or((text, K3S));
    let entry_names = EntryNames {
        cluster: k3d::spec::context_name(CLUSTER),
        context: k3d::spec::context_name(CLUSTER),
        user: k3d::spec::user_name(CLUSTER),
    };
    let server = "https://127.0.0.1:40000";
    let ours = kubeconfig::rewrite(node, &entry_names, server)
        .or_else(|_| kubeconfig::rewrite(K3S, &entry_names, server))
        .expect("the k3s kubeconfig rewrites");
    let ours: Value = serde_saphyr::from_str(&ours).expect("a rewritten kubeconfig parses");
    let Some(doc) = parse(users) else {
        return;
    };
    // un-merging from a file as found (with or without our marker) never panics
    let _ = unmerge_doc(&mut doc.clone(), &OWNER);

    for switch_context in [false, true] {
        let mut merged = doc.clone();
        if let Err(e) = merge_doc(&mut merged, &ours, &OWNER, switch_context) {
            assert!(
                [ErrorCode::AlreadyExists, ErrorCode::InvalidArgument].contains(&e.code()),
                "{e}"
            );
            continue;
        }
        assert!(merged.is_object());
        for (list, name) in [
            ("clusters", &entry_names.cluster),
            ("users", &entry_names.user),
            ("contexts", &entry_names.context),
        ] {
            assert!(
                names(&merged[list]).contains(&name.as_str()),
                "{list}: {merged}"
            );
        }
        if switch_context {
            assert_eq!(merged["current-context"], entry_names.context.as_str());
        }
        // as the merge writes the file, and the next merge reads it
        let mut opts = serde_saphyr::SerializerOptions::default();
        opts.prefer_block_scalars = false;
        let written = serde_saphyr::to_string_with_options(&merged, opts).expect("serialises");
        let read: Value = serde_saphyr::from_str(&written).expect("what we write reads back");
        assert_eq!(read, merged, "written as:\n{written}");

        let mut unmerged = merged;
        assert!(
            unmerge_doc(&mut unmerged, &OWNER).expect("un-merge"),
            "{unmerged}"
        );
        assert!(!unmerge_doc(&mut unmerged, &OWNER).expect("un-merge again"));
    }
});
