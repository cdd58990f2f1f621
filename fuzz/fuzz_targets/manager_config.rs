//! Manager configuration as the C ABI takes it (`kecs_manager_new`): serde JSON
//! (`ClusterManagerConfig::from_json`), then `resolve` against an environment.
//!
//! Input: the config JSON, optionally followed by a NUL byte and `KEY=VALUE`
//! lines (the environment `resolve` sees). Nothing here dials: `resolve` only
//! reads the Docker CLI's config and context files, and those always come from
//! a fixture directory made by this target (`HOME`, `DOCKER_CONFIG` and
//! `dockerConfig` point there), so the run depends on nothing of the machine's.
#![no_main]

use kecs_cluster::config::ClusterManagerConfig;
use kecs_cluster::names;
use kecs_cluster::ErrorCode;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Two Docker CLI config directories: `home/.docker` (contexts, no current
/// one) and `config` (the same contexts, `currentContext` set). Context
/// `remote` is a TLS engine at an RFC 5737 address (never dialled), `plain` a
/// unix socket.
struct Fixture {
    home: String,
    config: String,
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("fixture dir");
    std::fs::write(path, text).expect("fixture file");
}

const CONTEXTS: [(&str, &str); 2] = [
    ("remote", "tcp://192.0.2.10:2376"),
    ("plain", "unix:///run/kecs-fuzz/docker.sock"),
];

/// The directory the Docker CLI keeps a context under: hex SHA-256 of its name.
fn context_dir(name: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, name.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = std::env::var_os("KECS_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("kecs-cluster-fuzz-manager_config"));
        let home = root.join("home");
        let config = root.join("config");
        for (dir, current) in [(home.join(".docker"), ""), (config.clone(), "remote")] {
            write(
                &dir.join("config.json"),
                &format!(r#"{{"auths":{{}},"currentContext":"{current}"}}"#),
            );
            for (name, host) in CONTEXTS {
                let id = context_dir(name);
                write(
                    &dir.join("contexts/meta").join(&id).join("meta.json"),
                    &format!(
                        r#"{{"Name":"{name}","Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
                    ),
                );
                if name == "remote" {
                    for f in ["ca.pem", "cert.pem", "key.pem"] {
                        write(&dir.join("contexts/tls").join(&id).join("docker").join(f), "x");
                    }
                }
            }
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                write(&dir.join(f), "x");
            }
        }
        Fixture {
            home: home.display().to_string(),
            config: config.display().to_string(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (json, env_lines) = text.split_once('\0').unwrap_or((text, ""));
    let mut config = match ClusterManagerConfig::from_json(json) {
        Ok(c) => c,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            return;
        }
    };
    let again = serde_json::to_string(&config).expect("parsed config serialises");
    assert_eq!(
        ClusterManagerConfig::from_json(&again).expect("serialised config parses"),
        config,
        "round trip through {again}"
    );

    let fixture = fixture();
    if config.docker_config.is_some() {
        config.docker_config = Some(fixture.config.clone());
    }
    let mut env: HashMap<String, String> = env_lines
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("HOME".into(), fixture.home.clone());
    if env.contains_key("DOCKER_CONFIG") {
        env.insert("DOCKER_CONFIG".into(), fixture.config.clone());
    }
    let resolved = match config.resolve(|k| env.get(k).cloned()) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
            return;
        }
    };
    names::validate_prefix(&resolved.name_prefix).expect("resolved prefix is valid");
    for image in [
        &resolved.image,
        &resolved.lb_image,
        &resolved.registry_image,
    ] {
        kecs_cluster::config::validate_image(image).expect("resolved image is valid");
    }
    assert_ne!(resolved.registry_port, 0);
    if let Some(h) = &resolved.host_address {
        assert!(!h.trim().is_empty() && !h.contains('/'), "{h:?}");
    }
});
