//! The NodePort stand-in: every node listens on the node port of every
//! NodePort/LoadBalancer Service (0.0.0.0, TCP), as kube-proxy opens them on every
//! node, and answers HTTP with its own name, so a test (or a load balancer in
//! front of the nodes) can see which node it reached. A server follows its own
//! replica of the state; agents long-poll the servers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::join::{self, JoinError};
use crate::logfmt;
use crate::state::State;

/// The open listeners by port; dropping a handle's task closes its socket.
#[derive(Default)]
struct Listeners(BTreeMap<u16, JoinHandle<()>>);

impl Listeners {
    async fn reconcile(&mut self, want: &[u16], node: &Arc<str>) {
        let stale: Vec<u16> = self
            .0
            .keys()
            .copied()
            .filter(|p| !want.contains(p))
            .collect();
        for port in stale {
            if let Some(task) = self.0.remove(&port) {
                task.abort();
                // wait for the abort so the socket is closed when we log it
                let _ = task.await;
                logfmt::info(&format!("Closed node port {port}"));
            }
        }
        for &port in want {
            if self.0.contains_key(&port) {
                continue;
            }
            match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
                Ok(listener) => {
                    logfmt::info(&format!("Listening on node port {port}"));
                    self.0
                        .insert(port, tokio::spawn(answer(listener, node.clone())));
                }
                Err(e) => logfmt::error(&format!("node port {port}: {e}")),
            }
        }
    }
}

/// Answers every HTTP request with the node's name.
async fn answer(listener: tokio::net::TcpListener, node: Arc<str>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            // read the request head (up to the blank line) before answering, so the
            // client never sees a reset for unread bytes
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let body = format!("{node}\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// A server: listen on the ports of its own state's services.
pub async fn follow_state(state: Arc<State>, node: String) {
    let node: Arc<str> = node.into();
    let mut rx = state.ports();
    let mut open = Listeners::default();
    loop {
        let want = rx.borrow_and_update().1.clone();
        open.reconcile(&want, &node).await;
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// An agent (or a kind node): long-poll a server for the ports (each poll is
/// also the node's heartbeat). The server names the cluster's servers in its
/// answer; when the one polled is away the next is tried, as a k3s agent's
/// client-side load balancer fails over (it keeps the URL it joined through
/// too). The list is kept in `servers_file` (when given) for the next boot.
pub async fn follow_server(
    url: String,
    token: String,
    node: String,
    servers_file: Option<PathBuf>,
) {
    let node: Arc<str> = node.into();
    let mut open = Listeners::default();
    let entry = url;
    let mut servers = vec![entry.clone()];
    let mut at = 0usize;
    let mut failed_in_a_row = 0usize;
    let mut generation = 0u64;
    let mut pause = Duration::from_millis(20);
    loop {
        let current = servers[at % servers.len()].clone();
        let path = format!("/v1-k3s-sim/nodeports?after={generation}&node={node}");
        match join::request(&current, &token, "GET", &path, b"", Duration::from_secs(30)).await {
            Ok((200, body)) => {
                pause = Duration::from_millis(20);
                failed_in_a_row = 0;
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                generation = v["generation"].as_u64().unwrap_or(0);
                let want: Vec<u16> = v["ports"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut known: Vec<String> = v["servers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|u| u.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                // the URL the node joined through stays in the rotation: it may
                // be a load balancer in front of the servers (kind's, k3d's),
                // which reaches whichever of them is up
                if !known.is_empty() && !known.contains(&entry) {
                    known.push(entry.clone());
                }
                if !known.is_empty() && known != servers {
                    at = known.iter().position(|u| *u == current).unwrap_or(0);
                    servers = known;
                    if let Some(file) = &servers_file {
                        save_servers(file, &servers);
                    }
                }
                open.reconcile(&want, &node).await;
                continue;
            }
            Ok((code, _)) => logfmt::error(&format!("node ports from {current}: HTTP {code}")),
            Err(JoinError::Unreachable(e) | JoinError::Rejected(e)) => {
                logfmt::info(&format!("node ports from {current}: {e}"))
            }
        }
        at = (at + 1) % servers.len();
        failed_in_a_row += 1;
        if failed_in_a_row >= servers.len() {
            // every server is away (restarting): back off, up to a second
            failed_in_a_row = 0;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// The servers an agent knew, from its previous run.
pub fn saved_servers(file: &Path) -> Vec<String> {
    std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_servers(file: &Path, servers: &[String]) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(servers)?)?;
        std::fs::rename(&tmp, file)
    };
    if let Err(e) = write() {
        logfmt::error(&format!("saving {}: {e}", file.display()));
    }
}
