//! The listener: accepts connections up to a cap, gives each a deadline to start a request
//! and send its headers, serves HTTP/1.1 and HTTP/2 (prior knowledge) on the same port, and
//! stamps every read with the kernel's receive time.
//!
//! **Why the limits.** A client that opens a connection and sends nothing, or a header byte a
//! second (slowloris), holds a file descriptor and a task for as long as the server lets it:
//! thousands of them exhaust the descriptors and `/ping` fails. So a new connection must send
//! its first byte within `--header-timeout`, and hyper closes one whose headers (or next
//! keep-alive request) do not arrive within it; beyond `--max-connections` open at once, the
//! listener stops accepting and further clients wait in the kernel's listen queue.
//!
//! **Arrival stamps** — `Server-Timing: arrival` says when a request's final bytes reached this
//! machine, not when a busy worker thread got round to looking at them.
//!
//! **Why the kernel's clock.** A burst of 20 requests released together reaches the socket
//! layer within tens of microseconds. Stamped in the handler, the same burst looks milliseconds
//! wide on two cores: each connection's task is polled only after the tasks before it have
//! parsed their request and run their handler to its first database wait. That is the server's
//! queue, not the client's delivery, and it would hide the one thing the spread is there to
//! show. With `SO_TIMESTAMPNS` set, every `recvmsg` carries the time the last packet it read
//! was received (`SCM_TIMESTAMPNS`); [`Stamped`] keeps the latest per connection, and the
//! booking handler reads it once the body is complete ([`Received::last`]). Over HTTP/1.1 that
//! read is the one that brought the request's final byte; over HTTP/2 under the single-packet
//! attack, every stream's final frame came in one read and shares one stamp.
//!
//! Where the kernel gives no stamp (the option refused), a read is stamped when it returns.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::monotonic_us;

/// When a connection's latest read arrived, on the clock of [`monotonic_us`]: the handlers'
/// view of their connection (`ConnectInfo<Received>`).
#[derive(Debug, Clone, Default)]
pub struct Received(Arc<AtomicU64>);

impl Received {
    /// The arrival of the latest bytes read on this connection (µs, [`monotonic_us`]).
    pub fn last(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a connection's first byte, and each request's headers.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// connections finish the requests they have (HTTP/2: GOAWAY; HTTP/1.1: close after the
/// response in flight) and returns once every one has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the cap, stop accepting: the kernel queues the next clients.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A connection that went away before it was accepted is not the listener's
                // problem; running out of descriptors is, but it passes: wait, as axum does.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let watcher = graceful.watcher();
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // hyper's header deadline starts once it reads; before that it waits for the bytes
            // that tell HTTP/2 from HTTP/1.1, with no deadline of its own. So the first byte
            // must come within the deadline (peeked: hyper reads it). Readiness alone is not
            // enough: a fresh socket may report itself readable before anything came.
            if !tokio::time::timeout(limits.header_timeout, preface_or_first_byte(&stream))
                .await
                .unwrap_or(false)
            {
                return;
            }
            let (io, received) = Stamped::new(stream);
            let service = app.map_request(move |mut request: Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo(received.clone()));
                request.map(axum::body::Body::new)
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            // HTTP/2 has no header deadline in hyper: a client that sent its preface and then
            // nothing (or stopped reading) would hold its slot and the shutdown forever. Keep-
            // alive PINGs, half the deadline apart and each answered within the other half,
            // close such a connection within --header-timeout of its last frame.
            let half = limits.header_timeout / 2;
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(half.max(Duration::from_millis(1)))
                .keep_alive_timeout(half.max(Duration::from_millis(1)));
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!("connection ended: {error}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits (peeking: hyper reads the bytes) until the connection has sent something — and, when
/// what it sent starts like the HTTP/2 preface, the whole preface: hyper's keep-alive, the
/// HTTP/2 connection's own deadline, starts only after it. `false` when the client closed.
async fn preface_or_first_byte(stream: &TcpStream) -> bool {
    let mut seen = [0u8; 24];
    loop {
        let n = match stream.peek(&mut seen).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let common = n.min(PREFACE.len());
        if seen[..common] != PREFACE[..common] || n >= PREFACE.len() {
            return true;
        }
        // Part of the preface is in: wait for more (a readable socket peeks the same bytes
        // again at once, so give the rest a moment to come).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A TCP connection that stamps each read with the kernel's receive time.
pub struct Stamped {
    stream: TcpStream,
    received: Received,
    /// The buffer of `recvmsg`'s control message; `None` when the kernel stamps nothing.
    control: Option<Vec<u8>>,
}

impl Stamped {
    /// `stream`, and the handle its handlers read the stamps with.
    pub fn new(stream: TcpStream) -> (Self, Received) {
        let _ = stream.set_nodelay(true);
        // Without the option the reads are stamped on return: worse, not wrong.
        let kernel = socket::setsockopt(&stream, sockopt::ReceiveTimestampns, &true).is_ok();
        let received = Received::default();
        let io = Stamped {
            stream,
            received: received.clone(),
            control: kernel.then(|| nix::cmsg_space!(TimeSpec)),
        };
        (io, received)
    }
}

/// One `recvmsg` on `fd` into `into`: the bytes read, and the kernel's receive time if it gave
/// one in `control`.
#[allow(clippy::ptr_arg)] // nix's `recvmsg` takes the control buffer as a `Vec`
fn receive(
    fd: std::os::fd::RawFd,
    into: &mut [u8],
    control: &mut Vec<u8>,
) -> io::Result<(usize, Option<TimeSpec>)> {
    let mut iov = [io::IoSliceMut::new(into)];
    let message = socket::recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::empty())
        .map_err(io::Error::from)?;
    let stamp = message.cmsgs().ok().and_then(|mut all| {
        all.find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(at) => Some(at),
            _ => None,
        })
    });
    Ok((message.bytes, stamp))
}

/// `at` (the realtime clock) on the clock of [`monotonic_us`]: now, less how long ago it was.
fn on_monotonic_clock(at: Option<TimeSpec>) -> u64 {
    let now = monotonic_us();
    let Some(at) = at else { return now };
    let (Ok(secs), Ok(nanos)) = (u64::try_from(at.tv_sec()), u32::try_from(at.tv_nsec())) else {
        return now;
    };
    let at = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    let ago = SystemTime::now().duration_since(at).unwrap_or_default();
    now.saturating_sub(u64::try_from(ago.as_micros()).unwrap_or(u64::MAX))
}

impl AsyncRead for Stamped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Stamped {
            stream,
            received,
            control,
        } = self.get_mut();
        let Some(control) = control else {
            let before = buf.filled().len();
            ready!(Pin::new(stream).poll_read(cx, buf))?;
            if buf.filled().len() > before {
                received.0.store(monotonic_us(), Ordering::Release);
            }
            return Poll::Ready(Ok(()));
        };
        loop {
            ready!(stream.poll_read_ready(cx))?;
            let fd = stream.as_raw_fd();
            let unfilled = buf.initialize_unfilled();
            // `try_io` clears the readiness when the read would block, so the loop waits again.
            match stream.try_io(Interest::READABLE, || receive(fd, unfilled, control)) {
                Ok((n, stamp)) => {
                    buf.advance(n);
                    if n > 0 {
                        received
                            .0
                            .store(on_monotonic_clock(stamp), Ordering::Release);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
