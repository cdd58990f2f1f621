//! A server's replica of the cluster state, served on the API port: what a k3s
//! server (`main.rs`) and a kind control plane (`kind.rs`) share. The first
//! server of a cluster founds it (a new, seeded state); the others register
//! with a member, take the cluster's state from its answer, and from then on
//! replicate with every member (`cluster.rs`). Certificates, the node's record
//! and the state are kept in the node's data directory across restarts.

use serde_json::Value;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cluster::Cluster;
use crate::pki::{self, CaPem, Flavor, Pki};
use crate::state::{NodeRecord, State};
use crate::{api, logfmt, nodeports};

/// Reads a CA from `cert`/`key`, or makes one with `make` and keeps it there
/// (mode 0600) for the next boot.
pub fn load_or_make_ca(
    cert: &Path,
    key: &Path,
    make: impl FnOnce() -> Result<CaPem, String>,
) -> Result<CaPem, String> {
    if let (Ok(cert_pem), Ok(key_pem)) =
        (std::fs::read_to_string(cert), std::fs::read_to_string(key))
    {
        return Ok(CaPem { cert_pem, key_pem });
    }
    let ca = make()?;
    crate::write_private(key, &ca.key_pem)?;
    crate::write_private(cert, &ca.cert_pem)?;
    Ok(ca)
}

/// This node's serving and admin certificates under `ca`. The serving
/// certificate is issued on every boot (the node's address may change); the
/// admin client certificate is kept in `tls_dir`, so that a kubeconfig written
/// before a restart stays valid after it.
pub fn issue_persistent(
    ca: &CaPem,
    flavor: Flavor,
    tls_dir: &Path,
    me: &str,
    ips: &[IpAddr],
    sans: &[String],
) -> Result<Pki, String> {
    let mut issued =
        pki::issue(ca, flavor, me, ips, sans).map_err(|e| format!("issuing certificates: {e}"))?;
    let (admin_crt, admin_key) = (
        tls_dir.join("client-admin.crt"),
        tls_dir.join("client-admin.key"),
    );
    match (
        std::fs::read_to_string(&admin_crt),
        std::fs::read_to_string(&admin_key),
    ) {
        (Ok(c), Ok(k)) => {
            issued.admin_cert_pem = c;
            issued.admin_key_pem = k;
        }
        _ => {
            crate::write_private(&admin_key, &issued.admin_key_pem)?;
            crate::write_private(&admin_crt, &issued.admin_cert_pem)?;
        }
    }
    Ok(issued)
}

/// The member URLs a server (re)joins through, in turn: `entry` (the URL it
/// was told to join), then every other member its saved state knew, so that a
/// restarted server rejoins through any of them, as a k3s server rejoins its
/// etcd cluster.
pub fn rejoin_urls(entry: &str, db: &Path, me: &str) -> Vec<String> {
    let mut urls = vec![entry.to_string()];
    for m in State::saved_members(db) {
        if m.name != me && !urls.contains(&m.url) {
            urls.push(m.url);
        }
    }
    urls
}

/// How a replica starts.
pub struct Spec {
    /// this server's node, `peer_url` set: members reach it there
    pub me: NodeRecord,
    pub token: String,
    /// where the state is kept
    pub db: PathBuf,
    pub service_net: (u8, u8),
    /// the cluster state a joining server took from the member it registered
    /// with; None: this server founded the cluster
    pub joined: Option<Value>,
    pub port: u16,
}

pub struct Replica {
    pub state: Arc<State>,
    pub cluster: Arc<Cluster>,
    /// the state came from a previous run
    pub restarted: bool,
}

/// Opens the state and serves the API on `spec.port`. Listening starts before
/// catching up (`Replica::catch_up`), so a push that comes meanwhile is taken
/// too; writes wait for the catch-up (the cluster does not lead before).
pub async fn serve(spec: &Spec, pki: &Pki) -> Result<Replica, String> {
    let (state, restarted) = State::open_with(
        spec.token.clone(),
        pki.ca.cert_pem.clone(),
        Some(spec.db.clone()),
        spec.service_net,
        spec.joined.is_none(),
    );
    if let Some(snapshot) = &spec.joined {
        state.install(snapshot);
    }
    let state = Arc::new(state);
    let cluster = Arc::new(Cluster::new(
        spec.me.name.clone(),
        spec.token.clone(),
        pki.admin_cert_pem.clone(),
        pki.admin_key_pem.clone(),
        state.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", spec.port))
        .await
        .map_err(|e| format!("listen on :{}: {e}", spec.port))?;
    let tls = api::tls_config(pki)?;
    let server = Arc::new(api::Server {
        state: state.clone(),
        ca: pki.ca.clone(),
        advertise: format!("{}:{}", spec.me.ip, spec.port),
        node_name: spec.me.name.clone(),
        cluster: cluster.clone(),
    });
    tokio::spawn(api::serve(listener, tls, server));
    Ok(Replica {
        state,
        cluster,
        restarted,
    })
}

impl Replica {
    /// Takes what the other members wrote while this server was away; a
    /// founder then records itself (the first member: it leads while it is
    /// up). From then on the server heartbeats the members and listens on the
    /// node ports of its own replica (every server holds the whole state).
    pub async fn catch_up(&self, me: &NodeRecord, founder: bool) {
        let answered = self.cluster.pull().await;
        if answered > 0 {
            logfmt::info(&format!(
                "Caught up with {answered} other server(s) at resourceVersion {}",
                self.state.resource_version()
            ));
        }
        if founder {
            self.state.register(me.clone());
            self.cluster.replicate().await;
        }
        tokio::spawn(self.cluster.clone().gossip());
        tokio::spawn(nodeports::follow_state(self.state.clone(), me.name.clone()));
    }
}
