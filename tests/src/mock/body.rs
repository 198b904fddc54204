//! Response bodies: whole, or streamed frame by frame by a producer task that paces the frames, injects a
//! reset, and notices when the client goes away.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::behavior::Drip;
use super::conn::ConnControl;
use super::state::Shared;

/// How long to let the connection flush what was sent before resetting it.
const FLUSH_BEFORE_RESET: Duration = Duration::from_millis(20);

/// The body type of every mock response.
#[derive(Debug)]
pub(crate) enum MockBody {
    /// The whole body at once (`None` once sent).
    Full(Option<Bytes>),
    /// Frames from a producer task.
    Channel(mpsc::Receiver<Bytes>),
}

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut *self {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            MockBody::Channel(receiver) => receiver
                .poll_recv(cx)
                .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Channel(_) => SizeHint::default(),
        }
    }
}

/// Tracks one request from arrival until its response is finished; if it is dropped unfinished (hyper drops
/// the handler or the body when the client goes away), the request counts as cancelled.
#[derive(Debug)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    finished: bool,
}

impl InFlight {
    pub fn start(shared: &Arc<Shared>) -> Self {
        shared.stats.update(|s| {
            s.requests_total += 1;
            s.requests_in_flight += 1;
        });
        Self {
            shared: Arc::clone(shared),
            finished: false,
        }
    }

    /// The response was handed over in full.
    pub fn complete(mut self) {
        self.finished = true;
    }

    /// The mock reset the connection on purpose.
    pub fn reset(mut self) {
        self.finished = true;
        self.shared.stats.update(|s| s.resets += 1);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let finished = self.finished;
        self.shared.stats.update(|s| {
            s.requests_in_flight -= 1;
            if !finished {
                s.cancelled += 1;
            }
        });
    }
}

/// How frames are released.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pacing {
    /// Pause before each frame after the first.
    pub frame_delay: Duration,
    /// Split each frame into slices with pauses between them.
    pub drip: Option<Drip>,
}

impl Pacing {
    pub fn is_immediate(&self) -> bool {
        self.frame_delay.is_zero() && self.drip.is_none()
    }
}

/// What happens after the last frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Complete,
    Reset,
}

/// A streamed body fed by a producer task.
pub(crate) struct Streamed {
    pub frames: Vec<Bytes>,
    pub pacing: Pacing,
    pub ending: Ending,
    /// A streaming API response (counted in `streams_*`), as opposed to a paced plain body.
    pub is_stream: bool,
}

impl Streamed {
    pub fn spawn(mut self, guard: InFlight, conn: ConnControl) -> MockBody {
        if self.pacing.is_immediate() && self.frames.len() > 1 {
            // Unpaced frames are indistinguishable on the wire from one write; one write is much cheaper.
            self.frames = vec![Bytes::from(self.frames.concat())];
        }
        let (sender, receiver) = mpsc::channel(1);
        tokio::spawn(self.produce(sender, guard, conn));
        MockBody::Channel(receiver)
    }

    async fn produce(self, sender: mpsc::Sender<Bytes>, guard: InFlight, conn: ConnControl) {
        let shared = Arc::clone(&guard.shared);
        if self.is_stream {
            shared.stats.update(|s| s.streams_active += 1);
        }
        let sent = send_all(&sender, self.frames, self.pacing).await;
        if self.is_stream {
            shared.stats.update(|s| s.streams_active -= 1);
        }
        if !sent {
            // The client went away: dropping the guard unfinished counts the cancellation.
            return;
        }
        match self.ending {
            Ending::Complete => {
                if self.is_stream {
                    shared.stats.update(|s| s.streams_completed += 1);
                }
                guard.complete();
            }
            Ending::Reset => {
                wait_until_drained(&sender).await;
                guard.reset();
                conn.reset();
                // Keep the body open: ending it would let hyper finish the message cleanly before the reset.
                sender.closed().await;
            }
        }
    }
}

/// Sends every frame with its pacing; false if the receiver (the client's connection) went away first.
async fn send_all(sender: &mpsc::Sender<Bytes>, frames: Vec<Bytes>, pacing: Pacing) -> bool {
    for (index, frame) in frames.into_iter().enumerate() {
        if index > 0 && !pause(sender, pacing.frame_delay).await {
            return false;
        }
        let slices = match pacing.drip {
            Some(drip) => slices(frame, drip.bytes),
            None => vec![frame],
        };
        for (slice_index, slice) in slices.into_iter().enumerate() {
            if slice_index > 0
                && !pause(sender, pacing.drip.map(|d| d.interval).unwrap_or_default()).await
            {
                return false;
            }
            if sender.send(slice).await.is_err() {
                return false;
            }
        }
    }
    true
}

/// Sleeps unless the receiver is dropped first; false in that case.
async fn pause(sender: &mpsc::Sender<Bytes>, duration: Duration) -> bool {
    if duration.is_zero() {
        return !sender.is_closed();
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = sender.closed() => false,
    }
}

/// Waits until hyper has taken every frame and had a moment to write it, so a reset cuts the stream after
/// the frames rather than before them.
async fn wait_until_drained(sender: &mpsc::Sender<Bytes>) {
    while sender.capacity() < sender.max_capacity() && !sender.is_closed() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(FLUSH_BEFORE_RESET).await;
}

fn slices(frame: Bytes, size: usize) -> Vec<Bytes> {
    (0..frame.len())
        .step_by(size.max(1))
        .map(|start| frame.slice(start..(start + size).min(frame.len())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_frame_in_order() {
        let frame = Bytes::from_static(b"abcdefg");
        assert_eq!(
            slices(frame.clone(), 3),
            [Bytes::from("abc"), Bytes::from("def"), Bytes::from("g")]
        );
        assert_eq!(slices(frame, 100).len(), 1);
    }
}
