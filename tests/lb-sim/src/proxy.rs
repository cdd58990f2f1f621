//! The forwarding engine both stand-ins share: a set of TCP/UDP listeners, each
//! with a pool of named upstreams, that can be reconfigured while it runs.
//!
//! Reconfiguring behaves like an nginx reload (and envoy's listener update): a
//! listener whose port stays configured is never closed, only its pool is swapped,
//! so clients of that port see no refused or reset connection; removed ports close;
//! new ports open. Established TCP connections keep running on the old pool, as
//! nginx's old workers finish theirs.
//!
//! Upstream names are resolved at connect time through the container's resolver
//! (Docker's embedded DNS), so a node restarted with a new address is reached at
//! the new one. A connect that fails or times out marks that upstream down for
//! `FAIL_TIMEOUT` and moves on to the next (nginx's `max_fails=1 fail_timeout=10s`
//! with `proxy_next_upstream on`); otherwise upstreams take turns (round robin).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

/// How long an upstream that failed a connect is skipped (nginx `fail_timeout`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One listener and where its traffic goes.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub proto: Proto,
    pub bind: SocketAddr,
    pub upstreams: Vec<Upstream>,
    pub connect_timeout: Duration,
    /// A UDP session with no traffic either way for this long is dropped.
    pub idle_timeout: Duration,
}

/// Where connection errors go, in the imitated program's log format.
pub type ErrorLog = fn(&str);

struct Server {
    upstream: Upstream,
    down_until: Mutex<Option<Instant>>,
}

impl Server {
    fn is_down(&self, now: Instant) -> bool {
        lock(&self.down_until).is_some_and(|t| t > now)
    }
    fn mark(&self, ok: bool) {
        *lock(&self.down_until) = (!ok).then(|| Instant::now() + FAIL_TIMEOUT);
    }
}

/// A poisoned lock only means another connection task panicked; its data is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Pool {
    servers: Vec<Server>,
    next: AtomicUsize,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Pool {
    fn new(route: &Route) -> Pool {
        Pool {
            servers: route
                .upstreams
                .iter()
                .map(|u| Server {
                    upstream: u.clone(),
                    down_until: Mutex::new(None),
                })
                .collect(),
            next: AtomicUsize::new(0),
            connect_timeout: route.connect_timeout,
            idle_timeout: route.idle_timeout,
        }
    }

    /// Servers in the order to try for one connection: round robin over the live
    /// ones, then the ones marked down (better a retry than no answer at all).
    fn order(&self) -> Vec<&Server> {
        let n = self.servers.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let rotated = (0..n).map(|i| &self.servers[(start + i) % n]);
        let (down, live): (Vec<&Server>, Vec<&Server>) = rotated.partition(|s| s.is_down(now));
        live.into_iter().chain(down).collect()
    }
}

/// Resolves `upstream` now (IPv4 first, as kind's `V4_PREFERRED` and Docker's
/// networks) and returns its addresses.
pub async fn resolve(upstream: &Upstream) -> io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((upstream.host.as_str(), upstream.port))
            .await?
            .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
    }
    Ok(addrs)
}

async fn dial(upstream: &Upstream) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in resolve(upstream).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connect_tcp(pool: &Pool, log: ErrorLog, client: SocketAddr) -> Option<TcpStream> {
    for server in pool.order() {
        let up = &server.upstream;
        match tokio::time::timeout(pool.connect_timeout, dial(up)).await {
            Ok(Ok(stream)) => {
                server.mark(true);
                return Some(stream);
            }
            Ok(Err(e)) => log(&format!(
                "connect() failed ({e}) while connecting to upstream, client: {client}, upstream: \"{up}\""
            )),
            Err(_) => log(&format!(
                "upstream timed out (110: Connection timed out) while connecting to upstream, client: {client}, upstream: \"{up}\""
            )),
        }
        server.mark(false);
    }
    log(&format!(
        "no live upstreams while connecting to upstream, client: {client}"
    ));
    None
}

async fn serve_tcp(mut client: TcpStream, peer: SocketAddr, pool: Arc<Pool>, log: ErrorLog) {
    let _ = client.set_nodelay(true);
    // No upstream: dropping the client closes it, as nginx does.
    let Some(mut upstream) = connect_tcp(&pool, log, peer).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

type SharedPool = Arc<RwLock<Arc<Pool>>>;

fn current(pool: &SharedPool) -> Arc<Pool> {
    pool.read().unwrap_or_else(|p| p.into_inner()).clone()
}

async fn accept_loop(listener: TcpListener, pool: SharedPool, log: ErrorLog) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                tokio::spawn(serve_tcp(client, peer, current(&pool), log));
            }
            Err(e) => {
                // Out of descriptors and the like: report, and do not spin on it.
                log(&format!("accept() failed ({e})"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

/// A UDP "session" per client address, as nginx's stream module keeps them: a
/// socket connected to one upstream, whose replies go back to that client.
async fn udp_loop(socket: UdpSocket, pool: SharedPool, log: ErrorLog) {
    let socket = Arc::new(socket);
    let sessions: Sessions = Arc::default();
    // Owned here, so removing the listener (aborting this task) ends its sessions.
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let Ok((n, client)) = received else { continue };
                let existing = lock(&sessions).get(&client).cloned();
                let upstream = match existing {
                    Some(u) => u,
                    None => {
                        let pool = current(&pool);
                        let Some((index, up)) = open_udp_session(&pool, log, client).await else {
                            continue;
                        };
                        let up = Arc::new(up);
                        lock(&sessions).insert(client, up.clone());
                        replies.spawn(udp_replies(
                            up.clone(), socket.clone(), client, pool, index, sessions.clone(), log,
                        ));
                        up
                    }
                };
                if let Err(e) = upstream.send(&buf[..n]).await {
                    log(&format!("sendmsg() failed ({e}) while proxying UDP, client: {client}"));
                    lock(&sessions).remove(&client);
                }
            }
            Some(_) = replies.join_next(), if !replies.is_empty() => {}
        }
    }
}

async fn open_udp_session(
    pool: &Pool,
    log: ErrorLog,
    client: SocketAddr,
) -> Option<(usize, UdpSocket)> {
    for server in pool.order() {
        let up = &server.upstream;
        let attempt = async {
            let addr = resolve(up).await?[0];
            let local: SocketAddr = if addr.is_ipv6() {
                "[::]:0".parse().unwrap()
            } else {
                "0.0.0.0:0".parse().unwrap()
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            io::Result::Ok(socket)
        };
        match tokio::time::timeout(pool.connect_timeout, attempt).await {
            Ok(Ok(socket)) => {
                let index = pool
                    .servers
                    .iter()
                    .position(|s| std::ptr::eq(s, server))
                    .unwrap_or(0);
                return Some((index, socket));
            }
            Ok(Err(e)) => log(&format!(
                "connect() failed ({e}) while connecting to upstream, udp client: {client}, upstream: \"{up}\""
            )),
            Err(_) => log(&format!(
                "upstream timed out while connecting to upstream, udp client: {client}, upstream: \"{up}\""
            )),
        }
        server.mark(false);
    }
    log(&format!(
        "no live upstreams while connecting to upstream, udp client: {client}"
    ));
    None
}

async fn udp_replies(
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    pool: Arc<Pool>,
    index: usize,
    sessions: Sessions,
    log: ErrorLog,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match tokio::time::timeout(pool.idle_timeout, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let _ = listener.send_to(&buf[..n], client).await;
            }
            Ok(Err(e)) => {
                // An ICMP "port unreachable" comes back as ECONNREFUSED here: the
                // next datagram from this client opens a session elsewhere.
                let up = &pool.servers[index].upstream;
                log(&format!(
                    "recv() failed ({e}) while proxying and reading from upstream, udp client: {client}, upstream: \"{up}\""
                ));
                pool.servers[index].mark(false);
                break;
            }
            Err(_) => break,
        }
    }
    let mut sessions = lock(&sessions);
    if sessions
        .get(&client)
        .is_some_and(|s| Arc::ptr_eq(s, &upstream))
    {
        sessions.remove(&client);
    }
}

struct Active {
    route: Route,
    pool: SharedPool,
    task: JoinHandle<()>,
}

/// The listeners currently open, keyed by protocol and bind address.
pub struct Listeners {
    active: HashMap<(Proto, SocketAddr), Active>,
    log: ErrorLog,
}

impl Listeners {
    pub fn new(log: ErrorLog) -> Listeners {
        Listeners {
            active: HashMap::new(),
            log,
        }
    }

    /// Makes the open listeners match `routes`: keeps (and re-points) the ones that
    /// stay, closes the removed ones, opens the new ones. Returns one message per
    /// listener that could not be opened; the others are applied regardless.
    pub async fn apply(&mut self, routes: &[Route]) -> Vec<String> {
        let wanted: HashMap<(Proto, SocketAddr), &Route> =
            routes.iter().map(|r| ((r.proto, r.bind), r)).collect();
        let removed: Vec<_> = self
            .active
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in removed {
            if let Some(active) = self.active.remove(&key) {
                active.task.abort();
                // Wait until the task (and with it the socket) is gone, so a port
                // that is removed and re-added in one change can be bound again.
                let _ = active.task.await;
            }
        }
        let mut errors = Vec::new();
        for route in routes {
            let key = (route.proto, route.bind);
            if let Some(active) = self.active.get_mut(&key) {
                if active.route != *route {
                    *active.pool.write().unwrap_or_else(|p| p.into_inner()) =
                        Arc::new(Pool::new(route));
                    active.route = route.clone();
                }
                continue;
            }
            let pool: SharedPool = Arc::new(RwLock::new(Arc::new(Pool::new(route))));
            let task = match route.proto {
                Proto::Tcp => bind_tcp(route.bind)
                    .map(|l| tokio::spawn(accept_loop(l, pool.clone(), self.log))),
                Proto::Udp => UdpSocket::bind(route.bind)
                    .await
                    .map(|s| tokio::spawn(udp_loop(s, pool.clone(), self.log))),
            };
            match task {
                Ok(task) => {
                    self.active.insert(
                        key,
                        Active {
                            route: route.clone(),
                            pool,
                            task,
                        },
                    );
                }
                Err(e) => errors.push(format!("bind() to {} failed ({e})", route.bind)),
            }
        }
        errors
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // nginx's default backlog on Linux
    socket.listen(511)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn route(port: u16, upstreams: &[(&str, u16)]) -> Route {
        Route {
            proto: Proto::Tcp,
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            upstreams: upstreams
                .iter()
                .map(|(h, p)| Upstream {
                    host: h.to_string(),
                    port: *p,
                })
                .collect(),
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn quiet(_: &str) {}

    /// A loopback server that answers every connection with `tag`.
    async fn tagged_server(tag: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(tag.as_bytes()).await;
            }
        });
        port
    }

    async fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }

    async fn ask(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn round_robin_fails_over_and_reconfigures_in_place() {
        let a = tagged_server("a").await;
        let b = tagged_server("b").await;
        // A port nothing listens on: connects are refused.
        let dead = free_port().await;
        let listen = free_port().await;
        let mut ls = Listeners::new(quiet);
        let errors = ls
            .apply(&[route(
                listen,
                &[("127.0.0.1", a), ("localhost", b), ("127.0.0.1", dead)],
            )])
            .await;
        assert!(errors.is_empty(), "{errors:?}");
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(ask(listen).await);
        }
        // Every connection got an answer (the dead one was skipped), both live ones served.
        assert!(seen.iter().all(|s| s == "a" || s == "b"), "{seen:?}");
        assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()));

        // Re-pointing the same port keeps the listener; a new port opens.
        let extra = free_port().await;
        let errors = ls
            .apply(&[
                route(listen, &[("127.0.0.1", b)]),
                route(extra, &[("127.0.0.1", a)]),
            ])
            .await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ask(listen).await, "b");
        assert_eq!(ask(extra).await, "a");

        // Removing a port closes it.
        ls.apply(&[route(extra, &[("127.0.0.1", a)])]).await;
        let refused = TcpStream::connect(("127.0.0.1", listen)).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(ask(extra).await, "a");
    }
}
