//! A TCP stream the mock can abort with a reset (RST) instead of a clean close, and the per-connection
//! switch a handler pulls to do it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Shared between a connection's task and the requests it serves.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnControl(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    reset: AtomicBool,
    kill: Notify,
}

impl ConnControl {
    /// Asks the connection task to drop the connection with a reset.
    pub fn reset(&self) {
        self.0.reset.store(true, Ordering::SeqCst);
        // `notify_one` keeps a permit when the task is not waiting yet.
        self.0.kill.notify_one();
    }

    /// Resolves once `reset` has been called.
    pub async fn killed(&self) {
        self.0.kill.notified().await;
    }

    fn should_reset(&self) -> bool {
        self.0.reset.load(Ordering::SeqCst)
    }
}

/// The accepted stream; on drop after [`ConnControl::reset`] it sets `SO_LINGER` to zero so the kernel
/// sends RST rather than FIN.
#[derive(Debug)]
pub(crate) struct ResettableIo {
    stream: TcpStream,
    control: ConnControl,
}

impl ResettableIo {
    pub fn new(stream: TcpStream, control: ConnControl) -> Self {
        Self { stream, control }
    }
}

impl Drop for ResettableIo {
    fn drop(&mut self) {
        if self.control.should_reset() {
            // Best effort: if it fails the peer sees a clean close, which still ends the exchange.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableIo {
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
