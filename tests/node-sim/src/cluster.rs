//! Servers of one k3s cluster as embedded etcd makes them look from outside:
//! every server holds a full replica of the state and keeps serving reads and
//! writes while any one of them is stopped.
//!
//! The members are the servers in the order they joined (the init server first),
//! recorded in the replicated state itself. The first member that is reachable
//! and in sync leads: a write that reaches another server is forwarded to it
//! (`api.rs`), and the leader pushes its whole state to every reachable member
//! before it answers, so a read on any server sees every acknowledged write. A
//! server that (re)starts pulls the newest state from the members before it
//! reports ready, and every server heartbeats the others: the heartbeat carries
//! when each node was last heard from (so a node heard by one server is Ready on
//! all) and the sender's resourceVersion (a server that missed a push catches up).
//! There is no quorum: this is a simulation of availability, not of consensus.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

use crate::join;
use crate::state::{Member, State};

pub struct Cluster {
    /// this server's node name (its member name)
    pub me: String,
    pub token: String,
    /// the client certificate and key (PEM) writes are forwarded with
    pub client_cert: String,
    pub client_key: String,
    pub state: Arc<State>,
    /// false until this server has pulled the members' state: until then it
    /// neither leads nor takes forwarded writes
    synced: AtomicBool,
}

/// How long a peer gets to answer a replication request.
const PEER_LIMIT: Duration = Duration::from_secs(5);

impl Cluster {
    pub fn new(me: String, token: String, cert: String, key: String, state: Arc<State>) -> Self {
        Cluster {
            me,
            token,
            client_cert: cert,
            client_key: key,
            state,
            synced: AtomicBool::new(false),
        }
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    pub fn members(&self) -> Vec<Member> {
        self.state.members()
    }

    /// The other members.
    fn peers(&self) -> Vec<Member> {
        self.members()
            .into_iter()
            .filter(|m| m.name != self.me)
            .collect()
    }

    /// Pushes this server's state to every other member and waits for each to
    /// take it or be found unreachable.
    pub async fn replicate(&self) {
        let body = Arc::new(self.state.snapshot().to_string().into_bytes());
        let mut pushes = JoinSet::new();
        for peer in self.peers() {
            let (token, body) = (self.token.clone(), body.clone());
            pushes.spawn(async move {
                let _ = join::request(
                    &peer.url,
                    &token,
                    "POST",
                    "/v1-k3s-sim/peer/state",
                    &body,
                    PEER_LIMIT,
                )
                .await;
            });
        }
        while pushes.join_next().await.is_some() {}
    }

    /// Takes the newest state any reachable member holds; then this server is in
    /// sync. Returns how many members answered.
    pub async fn pull(&self) -> usize {
        let mut pulls = JoinSet::new();
        for peer in self.peers() {
            let token = self.token.clone();
            pulls.spawn(async move { fetch_state(&peer.url, &token).await });
        }
        let mut answered = 0;
        while let Some(done) = pulls.join_next().await {
            if let Ok(Some(snapshot)) = done {
                answered += 1;
                self.state.install(&snapshot);
            }
        }
        self.synced.store(true, Ordering::SeqCst);
        answered
    }

    /// What a heartbeat carries and what answers it: this server's
    /// resourceVersion and when it last heard from each node (itself: now).
    pub fn heartbeat_body(&self) -> Value {
        let mut seen = self.state.seen_ages();
        seen.insert(self.me.clone(), 0);
        json!({"name": self.me, "resourceVersion": self.state.resource_version(), "seen": seen})
    }

    /// Takes the node liveness a heartbeat (or its answer) carries.
    pub fn take_heartbeat(&self, body: &Value) {
        if let Ok(seen) = serde_json::from_value::<BTreeMap<String, u64>>(body["seen"].clone()) {
            self.state.merge_seen(&seen);
        }
    }

    /// Heartbeats every other member, for ever; pulls from one that is ahead.
    pub async fn gossip(self: Arc<Self>) {
        // several heartbeats per grace period, so a live server never looks stale
        let every = Duration::from_secs(2).min(crate::state::node_grace() / 4);
        loop {
            tokio::time::sleep(every).await;
            let mut beats = JoinSet::new();
            for peer in self.peers() {
                let me = self.clone();
                beats.spawn(async move { me.heartbeat(&peer).await });
            }
            while beats.join_next().await.is_some() {}
        }
    }

    async fn heartbeat(&self, peer: &Member) {
        let body = self.heartbeat_body().to_string();
        let Ok((200, answer)) = join::request(
            &peer.url,
            &self.token,
            "POST",
            "/v1-k3s-sim/peer/heartbeat",
            body.as_bytes(),
            PEER_LIMIT,
        )
        .await
        else {
            return;
        };
        let answer: Value = serde_json::from_str(&answer).unwrap_or_default();
        self.take_heartbeat(&answer);
        let theirs = answer["resourceVersion"].as_u64().unwrap_or(0);
        if theirs > self.state.resource_version() {
            if let Some(snapshot) = fetch_state(&peer.url, &self.token).await {
                self.state.install(&snapshot);
            }
        }
    }
}

/// A member's whole state, or None when it cannot be had.
async fn fetch_state(url: &str, token: &str) -> Option<Value> {
    match join::request(url, token, "GET", "/v1-k3s-sim/peer/state", b"", PEER_LIMIT).await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}
