//! The listener: TCP connections whose reads are stamped by the kernel, so that
//! `Server-Timing: arrival` says when a request's final bytes reached this machine — not when a
//! busy worker thread got round to looking at them.
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

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::monotonic_us;

/// A [`TcpListener`] whose connections are [`Stamped`].
pub struct StampingListener(pub TcpListener);

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

impl Listener for StampingListener {
    type Io = Stamped;
    type Addr = Received;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => {
                    // Without the option the reads are stamped on return: worse, not wrong.
                    let kernel =
                        socket::setsockopt(&stream, sockopt::ReceiveTimestampns, &true).is_ok();
                    let received = Received::default();
                    let io = Stamped {
                        stream,
                        received: received.clone(),
                        control: kernel.then(|| nix::cmsg_space!(TimeSpec)),
                    };
                    return (io, received);
                }
                // A connection that went away before it was accepted is not the listener's
                // problem; running out of descriptors is, but it passes: wait, as axum does.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Received::default())
    }
}

impl Connected<IncomingStream<'_, StampingListener>> for Received {
    fn connect_info(stream: IncomingStream<'_, StampingListener>) -> Self {
        stream.remote_addr().clone()
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
