//! Serving a [`Router`] over TCP with the connection limits a public
//! endpoint needs, in the style of hyper's and Envoy's settings
//! ([`ConnectionLimits`]): what `nimbus serve` runs, and what an embedder
//! may run instead of `axum::serve`.
//!
//! | limit | default | what happens |
//! |---|---|---|
//! | `header_read_timeout` | 10 s | a request head not complete this long after its first byte (or, on a new connection, after accept) closes the connection: a slowloris client holds a socket for 10 s, not forever |
//! | `keep_alive_timeout` | 60 s (as AWS's load balancers) | a connection with no request in flight and no byte moving either way for this long is closed — an idle keep-alive, or a client that stopped reading its response |
//! | `body_read_timeout` | 30 s | a request body not fully received this long after its head fails the request: 408 from the gateway |
//! | `max_connections` | 10 000, at most ¾ of the open-file limit | the next connection gets a `503` with `connection: close` and is closed; the server never runs out of file descriptors |
//!
//! Draining ([`serve`]'s `shutdown`) stops accepting, lets each
//! connection finish its request in flight and closes idle ones at once.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use bytes::Bytes;
use http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Per-connection limits of [`serve`] (the module's table has the
/// defaults and what each does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; beyond, new ones are refused.
    pub max_connections: usize,
    /// From a request's first byte (or accept) to the end of its head.
    pub header_read_timeout: Duration,
    /// No request in flight and nothing moving: the connection is closed.
    pub keep_alive_timeout: Duration,
    /// From a request's head to the end of its body.
    pub body_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// 10 000, or ¾ of the soft open-file limit if that is lower: the rest is
/// for the ledger, the stores, compiled components and outbound sockets.
pub fn default_max_connections() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let three_quarters = usize::try_from(soft / 4 * 3).unwrap_or(usize::MAX);
    three_quarters.clamp(1, 10_000)
}

/// The error a request body that arrived too slowly ends with; the
/// gateway answers it with 408 ([`is_body_read_timeout`]).
#[derive(Debug)]
pub struct BodyReadTimeout(pub Duration);

impl fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms",
            self.0.as_millis()
        )
    }
}

impl StdError for BodyReadTimeout {}

/// Whether `e`, or what caused it, is a [`BodyReadTimeout`].
pub fn is_body_read_timeout(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyReadTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves,
/// then drains: no new connections, requests in flight finish, idle
/// connections close. Returns when every connection has ended.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = limits.max_connections.max(1);
    let open = Arc::new(Semaphore::new(slots));
    // Refused connections are answered by short-lived tasks; bounded too,
    // so a flood of refusals cannot itself exhaust descriptors.
    let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: the process is out of something; wait
                // for connections to end rather than spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::debug!(max = slots, "connection refused: at the connection cap");
            match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(stream),
            }
            continue;
        };
        let router = router.clone();
        let drain = drain_rx.clone();
        tokio::spawn(async move {
            connection(stream, router, limits, drain).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = drain_tx.send(true);
    // Every connection holds a slot until it ends.
    let _ = open.acquire_many(slots as u32).await;
}

const REFUSALS_AT_ONCE: usize = 256;

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain\r\ncontent-length: 34\r\n\r\nthe server is at its connection cap";

/// Answers 503 and closes without a reset: what the client already sent is
/// read and discarded for a moment first (closing a socket with unread data
/// makes the kernel send RST, which clients report as a network error
/// instead of the answer).
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await?;
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
        }
    })
    .await;
}

/// What the watchdog of one connection knows.
#[derive(Debug)]
struct Activity {
    /// Requests whose handler has not answered yet.
    in_flight: usize,
    /// When a request head started arriving (or the connection was
    /// accepted) and its handler has not been called yet.
    head_since: Option<Instant>,
    /// The last byte read or written.
    last_io: Instant,
}

#[derive(Debug)]
struct ConnState {
    activity: Mutex<Activity>,
    /// Poked when a deadline may have moved earlier.
    changed: Notify,
}

enum Expired {
    Header,
    KeepAlive,
}

impl ConnState {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            activity: Mutex::new(Activity {
                in_flight: 0,
                head_since: Some(now),
                last_io: now,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io(&self, read: bool) {
        let mut a = self.lock();
        a.last_io = Instant::now();
        if read && a.in_flight == 0 && a.head_since.is_none() {
            // The first byte of the next request: its head's clock starts.
            a.head_since = Some(a.last_io);
            drop(a);
            self.changed.notify_one();
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut a = self.lock();
        a.in_flight += 1;
        a.head_since = None;
        drop(a);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// The next instant something may expire; `None` while a request runs.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let a = self.lock();
        if a.in_flight > 0 {
            return None;
        }
        Some(match a.head_since {
            Some(since) => since + limits.header_read_timeout,
            None => a.last_io + limits.keep_alive_timeout,
        })
    }

    fn expired(&self, limits: &ConnectionLimits, now: Instant) -> Option<Expired> {
        let a = self.lock();
        if a.in_flight > 0 {
            return None;
        }
        match a.head_since {
            Some(since) if now >= since + limits.header_read_timeout => Some(Expired::Header),
            None if now >= a.last_io + limits.keep_alive_timeout => Some(Expired::KeepAlive),
            _ => None,
        }
    }
}

/// One request's handler running; ends with the guard.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.lock();
        a.in_flight -= 1;
        a.last_io = Instant::now();
        drop(a);
        self.0.changed.notify_one();
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut drain: watch::Receiver<bool>,
) {
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        state: state.clone(),
    });
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let router = router.clone();
        let busy = svc_state.begin();
        async move {
            let req = req.map(|body| {
                if body.is_end_stream() {
                    Body::new(body)
                } else {
                    Body::new(TimeoutBody::new(body, limits.body_read_timeout))
                }
            });
            let response = router.oneshot(req).await;
            drop(busy);
            response
        }
    });
    let mut builder = http1::Builder::new();
    // The header clock is ours (it starts at a request's first byte, so an
    // idle keep-alive connection is governed by keep_alive_timeout alone).
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, svc));
    let mut draining = false;
    loop {
        let deadline = state.deadline(&limits);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = drain.wait_for(|d| *d), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = state.changed.notified() => {}
            () = sleep_until(deadline) => match state.expired(&limits, Instant::now()) {
                // Dropping the connection closes the socket.
                Some(Expired::Header) => {
                    tracing::debug!("connection closed: request head not received in time");
                    return;
                }
                Some(Expired::KeepAlive) => return,
                None => {}
            },
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The socket, telling the connection's watchdog when bytes move.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.io(true);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.io(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.state.io(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must end by a deadline set when its head arrived.
struct TimeoutBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl TimeoutBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
