//! A fault-injecting proxy in front of the real Docker Engine, for tests of what
//! only a real engine shows: an HTTP/1.1 proxy on a Unix socket in a temporary
//! directory (the library reaches it through `dockerHost = "unix://<path>"`),
//! forwarding to the engine's own socket. A rule (method, substrings of the
//! path, which occurrence) can stall a request until the test releases it, or
//! close the connection without answering; the test is told when a
//! rule fires, on a channel, so it never sleeps to wait. The benchmark harness
//! (bench/, section `cancel`) uses it too.
//!
//! Every request is forwarded with `Connection: close` (upgrades excepted), so
//! each connection carries one request: the proxy reads only request heads and
//! then copies bytes both ways, whatever the body or the response (chunked log
//! streams, hijacked exec streams) looks like.
#![allow(dead_code)]

use kecs_cluster::CancellationToken;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

/// What a rule does to the request it matches.
#[derive(Clone)]
enum Action {
    /// Holds the request (not forwarded) until released; then forwards it.
    Stall(watch::Receiver<bool>),
    /// Closes the client's connection after reading the request head, without
    /// forwarding or answering: the client sees the connection reset mid-request.
    Close,
}

struct Rule {
    method: String,
    path_contains: Vec<String>,
    /// Fires on this occurrence (1 = the first matching request).
    nth: usize,
    seen: usize,
    action: Action,
    /// Told the request line when the rule fires.
    fired: mpsc::UnboundedSender<String>,
}

/// One request a rule fired on: `hit` waits until it has.
pub struct Fault {
    fired: mpsc::UnboundedReceiver<String>,
    release: Option<watch::Sender<bool>>,
}

impl Fault {
    /// Waits until the rule has fired (for a stall: the request is being held
    /// now) and returns its request line; panics after `limit`.
    pub async fn hit(&mut self, limit: Duration) -> String {
        match tokio::time::timeout(limit, self.fired.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the fault proxy stopped before the rule fired"),
            Err(_) => panic!("the rule did not fire within {limit:?}"),
        }
    }

    /// Lets a stalled request go on to the engine (no-op for other faults).
    pub fn release(&self) {
        if let Some(r) = &self.release {
            let _ = r.send(true);
        }
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        // a test that fails half-way never leaves a request stalled for ever
        self.release();
    }
}

/// The proxy: listening until dropped. Connections in flight are cut when it drops.
pub struct FaultProxy {
    dir: PathBuf,
    socket: PathBuf,
    rules: Arc<Mutex<Vec<Rule>>>,
    stop: CancellationToken,
}

/// The engine's own socket: DOCKER_HOST when it names one, else the default.
pub fn engine_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(h.trim_start_matches("unix://")),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

impl FaultProxy {
    pub async fn start(tag: &str) -> FaultProxy {
        let dir = std::env::temp_dir().join(format!(
            "kecs-fault-proxy-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let listener = UnixListener::bind(&socket).expect("binding the fault proxy's socket");
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let stop = CancellationToken::new();
        let upstream = engine_socket();
        tokio::spawn({
            let (rules, stop) = (rules.clone(), stop.clone());
            async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = stop.cancelled() => return,
                    };
                    let Ok((client, _)) = accepted else { continue };
                    let (rules, stop, upstream) = (rules.clone(), stop.clone(), upstream.clone());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(client, &rules, &upstream) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
            }
        });
        FaultProxy {
            dir,
            socket,
            rules,
            stop,
        }
    }

    /// `unix://<socket>`: the library's `dockerHost`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn add(&self, method: &str, path_contains: &[&str], nth: usize, action: Action) -> Fault {
        assert!(nth >= 1, "occurrences count from 1");
        let (tx, rx) = mpsc::unbounded_channel();
        self.rules.lock().unwrap().push(Rule {
            method: method.to_string(),
            path_contains: path_contains.iter().map(|s| s.to_string()).collect(),
            nth,
            seen: 0,
            action,
            fired: tx,
        });
        Fault {
            fired: rx,
            release: None,
        }
    }

    /// Holds the `nth` request with `method` whose path contains every one of
    /// `path_contains` until [`Fault::release`] (or the Fault drops).
    pub fn stall(&self, method: &str, path_contains: &[&str], nth: usize) -> Fault {
        let (release, released) = watch::channel(false);
        let mut fault = self.add(method, path_contains, nth, Action::Stall(released));
        fault.release = Some(release);
        fault
    }

    /// Closes the connection of the `nth` matching request without answering.
    pub fn reset(&self, method: &str, path_contains: &[&str], nth: usize) -> Fault {
        self.add(method, path_contains, nth, Action::Close)
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rule (if any) that fires for this request; counts occurrences.
fn fire(rules: &Mutex<Vec<Rule>>, method: &str, path: &str, line: &str) -> Option<Action> {
    let mut rules = rules.lock().unwrap();
    for rule in rules.iter_mut() {
        if rule.method.eq_ignore_ascii_case(method)
            && rule.path_contains.iter().all(|s| path.contains(s.as_str()))
        {
            rule.seen += 1;
            if rule.seen == rule.nth {
                let _ = rule.fired.send(line.to_string());
                return Some(rule.action.clone());
            }
        }
    }
    None
}

/// Serves one client connection: one request (see the module comment).
async fn serve(mut client: UnixStream, rules: &Mutex<Vec<Rule>>, upstream: &Path) {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return; // not HTTP as we know it
        }
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let line = head.lines().next().unwrap_or_default().to_string();
    let mut parts = line.split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    match fire(rules, method, path, &line) {
        Some(Action::Close) => return, // dropping the stream closes it unanswered
        Some(Action::Stall(mut released)) => {
            let _ = released.wait_for(|r| *r).await;
        }
        None => {}
    }
    let Ok(mut engine) = UnixStream::connect(upstream).await else {
        return;
    };
    let head = one_request_head(&head);
    if engine.write_all(head.as_bytes()).await.is_err()
        || engine.write_all(&buf[head_end..]).await.is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
}

/// The head with `Connection: close` (so the engine closes the connection after
/// its answer and the client opens a new one for its next request), unless the
/// request asks for an upgrade (a hijacked exec or attach stream).
fn one_request_head(head: &str) -> String {
    let upgrade = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("connection:") && l.contains("upgrade")
    });
    if upgrade {
        return head.to_string();
    }
    let mut out = String::with_capacity(head.len() + 20);
    for l in head.trim_end_matches("\r\n").split("\r\n") {
        if !l.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::one_request_head;

    #[test]
    fn heads_ask_for_one_request_per_connection() {
        let h = "GET /v1.41/version HTTP/1.1\r\nHost: docker\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            one_request_head(h),
            "GET /v1.41/version HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
        );
        let up = "POST /exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
        assert_eq!(one_request_head(up), up);
    }
}
