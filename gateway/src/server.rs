//! The accept loop: plaintext or TLS connections served by hyper-util's
//! auto (HTTP/1.1 + HTTP/2) connection builder (or, for a plaintext client
//! whose first bytes cannot be the h2c preface, by hyper's HTTP/1
//! connection directly), with every bound a hostile client could otherwise
//! exhaust made explicit in [`ServerConfig`]:
//!
//! - connections: at most `max_connections` at once; one more is accepted
//!   and answered `503` with `Retry-After` (plaintext) or closed (TLS), so
//!   the kernel backlog never fills with clients nobody will serve;
//! - silence: a connection must send its first byte (plaintext) or finish
//!   its handshake (TLS) within `header_read_timeout`;
//! - slow headers: HTTP/1 request heads must arrive within
//!   `header_read_timeout` (slowloris gets closed, with a 408 where hyper
//!   can still write one), which also bounds idle keep-alive connections
//!   since the timer restarts while waiting for the next request;
//! - big headers: HTTP/1 heads beyond `max_header_bytes` or with more than
//!   100 header fields (hyper's default) get 431, a request target over
//!   64 KiB 414, both with a problem body (`early_errors`); HTTP/2
//!   header lists are capped the same, with `h2_max_concurrent_streams`
//!   streams per connection;
//! - shutdown: the listener closes, in-flight connections drain for at most
//!   `drain_timeout`; before that, `convergio serve` turns readiness false
//!   and keeps accepting for `shutdown_delay`
//!   ([`Readiness::drain_on`](crate::readiness::Readiness::drain_on)).
//!
//! With `serve_threads`, connections are served thread-per-core: each of
//! those threads runs a single-threaded runtime, and the listener hands
//! each accepted socket to the next in turn (the caller's runtime keeps the
//! listener, the database pools and the background tasks).
//!
//! Each request carries the peer address (`ConnectInfo<SocketAddr>`) and,
//! on TLS connections with a verified client certificate, a
//! [`PeerCertificate`], as request extensions for `Authenticate`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::early_errors::ProblemBodies;
use crate::layers::PeerCertificate;
use crate::tls::{peer_certificate, TlsAcceptor};

/// Bounds of the accept loop and of each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Time for the first byte or the TLS handshake, and for each HTTP/1
    /// request head (default 10 s).
    pub header_read_timeout: Duration,
    /// Largest HTTP/1 request head or HTTP/2 header list (default 64 KiB;
    /// at least 8 KiB).
    pub max_header_bytes: usize,
    /// Concurrent connections before new ones are refused (default 10,000).
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection (default 128).
    pub h2_max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight connections (default 30 s).
    pub drain_timeout: Duration,
    /// How long the listener keeps accepting after readiness turned false
    /// on the stop signal (default 0; a few seconds behind a load balancer
    /// or in Kubernetes). Applied by the shutdown future, see
    /// [`Readiness::drain_on`](crate::readiness::Readiness::drain_on).
    pub shutdown_delay: Duration,
    /// Threads that serve connections, each with a single-threaded runtime
    /// of its own (thread-per-core: a connection and the tasks it spawns
    /// stay on one thread, with no work stealing or cross-thread wake-ups);
    /// the listener hands each accepted connection to the next in turn.
    /// 0 (the default) serves connections on the caller's runtime.
    pub serve_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            h2_max_concurrent_streams: 128,
            drain_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            serve_threads: 0,
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 §3.4): a plaintext client that
/// starts with it speaks h2c with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The canned answer to a connection beyond `max_connections`.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: 98\r\n\r\n{\"type\":\"about:blank\",\"title\":\"service unavailable\",\"status\":503,\"detail\":\"too many connections\"}";

/// Serves `router` on `listener` (TLS when `tls` is set) until `shutdown`
/// completes, then drains in-flight connections.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    config: ServerConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let mut threads = ServeThreads::start(config.serve_threads)?;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before accept:
                    // back off briefly instead of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "connection refused: at max_connections");
            tokio::spawn(refuse(stream, tls.is_none()));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            config: config.clone(),
            remote,
        };
        let watcher = graceful.watcher();
        let tls = tls.clone();
        match threads.next() {
            None => spawn_connection(connection, stream, tls, slot, watcher),
            Some(thread) => {
                // The socket leaves this runtime's reactor and joins the
                // serving thread's.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "could not hand a connection to a serving thread");
                        continue;
                    }
                };
                let handed = thread.send(Box::new(move || match TcpStream::from_std(stream) {
                    Ok(stream) => spawn_connection(connection, stream, tls, slot, watcher),
                    Err(error) => {
                        tracing::warn!(%error, "a serving thread could not take a connection")
                    }
                }));
                if handed.is_err() {
                    tracing::warn!("a serving thread has stopped; connection dropped");
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing connections still open");
    }
    // The serving threads end once their queues close; what is still
    // running on them (a stream its caller left) ends with them.
    drop(threads);
    Ok(())
}

/// Serves `connection` on the current runtime.
fn spawn_connection(
    connection: Connection,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    slot: tokio::sync::OwnedSemaphorePermit,
    watcher: hyper_util::server::graceful::Watcher,
) {
    // Two task types, not one future with both paths: a task is as large
    // as its future's largest state, and the TLS handshake's state would
    // otherwise be carried by every plaintext connection.
    match tls {
        None => tokio::spawn(async move {
            let _slot = slot;
            connection.run_plain(stream, watcher).await;
        }),
        Some(tls) => tokio::spawn(async move {
            let _slot = slot;
            connection.run_tls(stream, tls, watcher).await;
        }),
    };
}

/// Work for a serving thread, run in its runtime's context.
type Handoff = Box<dyn FnOnce() + Send>;

/// The threads of [`ServerConfig::serve_threads`], each running a
/// single-threaded runtime that takes connections from its queue.
struct ServeThreads {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<Handoff>>,
    turn: usize,
}

// === impl ServeThreads ===

impl ServeThreads {
    fn start(count: usize) -> std::io::Result<Self> {
        let mut queues = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (queue, mut handoffs) = tokio::sync::mpsc::unbounded_channel::<Handoff>();
            std::thread::Builder::new()
                .name(format!("convergio-serve-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(handoff) = handoffs.recv().await {
                            handoff();
                        }
                    });
                })?;
            queues.push(queue);
        }
        Ok(Self { queues, turn: 0 })
    }

    /// The queue of the thread whose turn it is; `None` without threads.
    fn next(&mut self) -> Option<&tokio::sync::mpsc::UnboundedSender<Handoff>> {
        let queue = self.queues.get(self.turn % self.queues.len().max(1))?;
        self.turn = self.turn.wrapping_add(1);
        Some(queue)
    }
}

async fn refuse(mut stream: TcpStream, plaintext: bool) {
    if plaintext {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(OVER_CAPACITY).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}

/// One accepted connection.
struct Connection {
    router: Router,
    config: Arc<ServerConfig>,
    remote: SocketAddr,
}

// === impl Connection ===

impl Connection {
    /// Serves a plaintext connection: HTTP/1.1, or HTTP/2 when the client
    /// opens with the h2c prior-knowledge preface.
    async fn run_plain(self, stream: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        // The auto builder waits for the client's preface with no timer of
        // its own: a silent connection must not pin a slot.
        let mut first = [0u8; H2_PREFACE.len()];
        let read =
            match tokio::time::timeout(self.config.header_read_timeout, stream.peek(&mut first))
                .await
            {
                Ok(Ok(read)) if read > 0 => read,
                _ => return,
            };
        let service = self.service(None);
        if H2_PREFACE.starts_with(&first[..read]) {
            let builder = self.builder(None);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(connection.into_owned()).await;
        } else {
            // Cannot be HTTP/2: serve HTTP/1 directly, without the auto
            // builder's replay of the bytes it read to decide.
            let connection = self
                .http1_builder()
                .serve_connection(TokioIo::new(ProblemBodies::new(stream)), service);
            let _ = watcher.watch(connection).await;
        }
    }

    /// Serves a TLS connection with the protocol ALPN chose.
    async fn run_tls(
        self,
        stream: TcpStream,
        tls: TlsAcceptor,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let timeout = self.config.header_read_timeout;
        let accepted = tokio::time::timeout(timeout, tls.accept(stream)).await;
        let stream = match accepted {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(remote = %self.remote, %error, "tls handshake refused");
                return;
            }
            Err(_) => return,
        };
        let (_, session) = stream.get_ref();
        let peer = peer_certificate(session);
        let h2 = session.alpn_protocol() == Some(b"h2".as_slice());
        let builder = self.builder(Some(h2));
        let service = self.service(peer);
        if h2 {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(connection.into_owned()).await;
        } else {
            let stream = ProblemBodies::new(stream);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(connection.into_owned()).await;
        }
    }

    /// The HTTP/1 builder for connections that cannot be HTTP/2, with the
    /// same bounds as the auto builder's HTTP/1 side.
    fn http1_builder(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_buf_size(self.config.max_header_bytes.max(8192));
        builder
    }

    /// The connection builder; `alpn_h2` fixes the protocol when TLS
    /// negotiated it.
    fn builder(&self, alpn_h2: Option<bool>) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_buf_size(self.config.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.config.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(30)));
        match alpn_h2 {
            Some(true) => builder.http2_only(),
            Some(false) => builder.http1_only(),
            None => builder,
        }
    }

    /// The per-connection service: the router, with the connection's
    /// facts as request extensions.
    fn service(
        &self,
        peer: Option<PeerCertificate>,
    ) -> impl hyper::service::Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
        Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send + 'static,
    > + Clone
           + Send
           + 'static {
        let router = self.router.clone();
        let remote = self.remote;
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(remote));
            if let Some(peer) = &peer {
                request.extensions_mut().insert(peer.clone());
            }
            router.clone().oneshot(request)
        })
    }
}
