//! Port and volume specs in both forms callers use:
//! - a string `HOSTPORT:CONTAINERPORT[/PROTO][@NODE]` (k3d's and docker's
//!   `8080:80@loadbalancer`; `parse_port_spec`);
//! - JSON: a `PortMapping` (`kecs_cluster_port_add`) or a `VolumeMount` (an
//!   element of create options' `volumes`).
//!
//! Each parsed mapping is validated both ways the library does: as a port added
//! to a running cluster (`validate_runtime_port`) and inside create options of a
//! 3-server, 2-agent cluster (`CreateOptions::validate`). Never a panic; every
//! refusal is an InvalidArgument.
#![no_main]

use kecs_cluster::options::{self, CreateOptions, PortMapping, VolumeMount};
use kecs_cluster::ErrorCode;
use libfuzzer_sys::fuzz_target;

fn invalid(e: kecs_cluster::Error) {
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
}

fn check_port(p: PortMapping) {
    match options::validate_runtime_port(&p) {
        Ok(v) => {
            assert_ne!(v.container_port, 0);
            assert!(["tcp", "udp"].contains(&v.protocol.as_str()), "{v:?}");
            assert_eq!(v.on_load_balancer, Some(true));
        }
        Err(e) => invalid(e),
    }
    let create = CreateOptions {
        servers: 3,
        agents: 2,
        ports: vec![p],
        ..Default::default()
    };
    match create.validate("img:1") {
        Ok(plan) => assert_eq!(plan.ports.len(), 1),
        Err(e) => invalid(e),
    }
}

fn check_volume(v: VolumeMount) {
    let create = CreateOptions {
        volumes: vec![v],
        ..Default::default()
    };
    match create.validate("img:1") {
        Ok(plan) => {
            let v = &plan.volumes[0];
            assert!(v.container_path.starts_with('/'), "{v:?}");
            assert!(!v.source.is_empty() && !v.source.contains(':'), "{v:?}");
            assert!(!v.container_path.contains(':'), "{v:?}");
        }
        Err(e) => invalid(e),
    }
}

/// The spec a mapping from `parse_port_spec` is written back as.
fn spec_of(p: &PortMapping) -> String {
    let mut s = format!("{}:{}", p.host_port, p.container_port);
    if let Some(proto) = &p.protocol {
        s = format!("{s}/{proto}");
    }
    if let Some(node) = &p.node {
        s = format!("{s}@{node}");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.trim_start().starts_with('{') {
        match serde_json::from_str::<PortMapping>(text) {
            Ok(p) => check_port(p),
            Err(_) => {
                if let Ok(v) = serde_json::from_str::<VolumeMount>(text) {
                    check_volume(v);
                }
            }
        }
        return;
    }
    match options::parse_port_spec(text) {
        Ok(p) => {
            // written back and read again, it is the same mapping
            let again = options::parse_port_spec(&spec_of(&p)).expect("spec of a parsed mapping");
            assert_eq!(again, p);
            check_port(p);
        }
        Err(e) => invalid(e),
    }
});
