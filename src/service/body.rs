//! Retryable request bodies (`retryBufferSize.requestBytes`).
//!
//! The body is not read ahead: the first attempt streams it as it arrives
//! (so a slow or bidirectional stream is never stalled) while a copy of its
//! frames is kept, up to the limit. A retry replays the copy, then goes on
//! reading the original where the copy ends. Once the body is larger than
//! the limit the copy is dropped and the request can no longer be retried;
//! the attempt that went past it keeps streaming the rest. Memory per
//! request is bounded by the limit.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::{BoxError, ProxyBody};

/// A frame as kept for replay.
#[derive(Clone)]
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

struct Shared {
    /// The original body; `None` once it ended or failed.
    source: Option<ProxyBody>,
    /// Frames read so far (cleared on overflow).
    kept: Vec<Kept>,
    /// Data bytes in `kept`.
    bytes: usize,
    limit: usize,
    /// The body outgrew the limit: no replay any more.
    overflowed: bool,
    /// The original failed with this message.
    failed: Option<String>,
    /// A copy already streams the original past the limit.
    direct_taken: bool,
    /// Copies waiting for the original: an abandoned attempt may still be
    /// polling it, and only the last poller's waker is kept by the source.
    waiters: Vec<Waker>,
    hint: SizeHint,
}

/// A request body that can be sent more than once while it fits the limit.
/// Clone it for each attempt ([`ReplayBody::replay`]).
pub struct ReplayBody {
    /// `None` for a body known to be empty: nothing to keep, share or lock
    /// (most requests: a GET costs no allocation here).
    shared: Option<Arc<Mutex<Shared>>>,
    /// Next frame of `kept` this copy returns.
    pos: usize,
    /// This copy went past the limit and reads the original directly.
    direct: bool,
    done: bool,
}

/// Why a replayed body cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Another attempt read past the retry buffer.
    #[error("the request body outgrew the retry buffer ({0} bytes) and cannot be sent again")]
    Overflowed(usize),
    /// The client's body failed.
    #[error("reading the request body failed: {0}")]
    Source(String),
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReplayBody {
    /// Wrap `body`, keeping up to `limit` bytes for replay.
    pub fn new(body: ProxyBody, limit: usize) -> ReplayBody {
        let ended = body.is_end_stream();
        if ended {
            return ReplayBody::empty();
        }
        let hint = body.size_hint();
        // A body announced larger than the limit is never kept at all.
        let too_big = hint.lower() > limit as u64;
        ReplayBody {
            shared: Some(Arc::new(Mutex::new(Shared {
                source: (!ended).then_some(body),
                kept: Vec::new(),
                bytes: 0,
                limit,
                overflowed: too_big,
                failed: None,
                direct_taken: false,
                waiters: Vec::new(),
                hint,
            }))),
            pos: 0,
            direct: false,
            done: false,
        }
    }

    /// An empty body: replayable, and free to make and copy.
    pub fn empty() -> ReplayBody {
        ReplayBody {
            shared: None,
            pos: 0,
            direct: false,
            done: true,
        }
    }

    /// Another copy for a new attempt, from the start. Of a body too big
    /// to keep, only the first copy made streams it; later ones fail.
    pub fn replay(&self) -> ReplayBody {
        let Some(shared) = &self.shared else {
            return ReplayBody::empty();
        };
        let mut s = lock(shared);
        let direct = s.overflowed && !s.direct_taken;
        if direct {
            s.direct_taken = true;
        }
        ReplayBody {
            shared: Some(shared.clone()),
            pos: 0,
            direct,
            done: !s.overflowed && s.source.is_none() && s.kept.is_empty() && s.failed.is_none(),
        }
    }

    /// Another handle on the same body, to make copies from; it takes
    /// nothing (unlike [`replay`](ReplayBody::replay), which may take the
    /// stream of a body too big to keep).
    pub fn handle(&self) -> ReplayBody {
        ReplayBody {
            shared: self.shared.clone(),
            pos: 0,
            direct: false,
            done: true,
        }
    }

    /// Whether a new copy would send the whole body again.
    pub fn can_replay(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let s = lock(shared);
        !s.overflowed && s.failed.is_none()
    }

    /// As a [`ProxyBody`] for the upstream.
    pub fn boxed(self) -> ProxyBody {
        http_body_util::BodyExt::boxed(self)
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(shared) = self.shared.clone() else {
            self.done = true;
            return Poll::Ready(None);
        };
        let mut s = lock(&shared);
        if !self.direct {
            if s.overflowed {
                self.done = true;
                return Poll::Ready(Some(Err(ReplayError::Overflowed(s.limit).into())));
            }
            if let Some(k) = s.kept.get(self.pos).cloned() {
                self.pos += 1;
                return Poll::Ready(Some(Ok(match k {
                    Kept::Data(d) => Frame::data(d),
                    Kept::Trailers(t) => Frame::trailers(t),
                })));
            }
        }
        if let Some(e) = &s.failed {
            self.done = true;
            return Poll::Ready(Some(Err(ReplayError::Source(e.clone()).into())));
        }
        let Some(source) = s.source.as_mut() else {
            self.done = true;
            return Poll::Ready(None);
        };
        let polled = Pin::new(source).poll_frame(cx);
        if polled.is_pending() {
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        // Whatever came, the other copies may now go on.
        for w in std::mem::take(&mut s.waiters) {
            w.wake();
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.source = None;
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                s.source = None;
                s.failed = Some(e.to_string());
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if !s.overflowed {
                    let len = frame.data_ref().map_or(0, Bytes::len);
                    if s.bytes.saturating_add(len) > s.limit {
                        // Too big to keep: this copy streams on alone.
                        s.overflowed = true;
                        s.kept = Vec::new();
                        s.direct_taken = true;
                        self.direct = true;
                    } else if let Some(d) = frame.data_ref() {
                        s.bytes += len;
                        s.kept.push(Kept::Data(d.clone()));
                        self.pos += 1;
                    } else if let Some(t) = frame.trailers_ref() {
                        s.kept.push(Kept::Trailers(t.clone()));
                        self.pos += 1;
                    }
                }
                if s.source.as_ref().is_some_and(|b| b.is_end_stream()) {
                    s.source = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        let Some(shared) = &self.shared else {
            return true;
        };
        let s = lock(shared);
        !self.direct
            && !s.overflowed
            && s.failed.is_none()
            && s.source.is_none()
            && self.pos >= s.kept.len()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.shared {
            Some(shared) => lock(shared).hint,
            None => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn frames(chunks: Vec<&'static str>, trailers: bool) -> ProxyBody {
        let mut v: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from(c))))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            v.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures_util::stream::iter(v)).boxed()
    }

    async fn read(b: ReplayBody) -> Result<(Bytes, Option<HeaderMap>), BoxError> {
        let c = b.collect().await?;
        let t = c.trailers().cloned();
        Ok((c.to_bytes(), t))
    }

    #[tokio::test]
    async fn small_body_replays_with_trailers() {
        let b = ReplayBody::new(frames(vec!["ab", "cd"], true), 16);
        let (d, t) = read(b.replay()).await.unwrap();
        assert_eq!(d, "abcd");
        assert!(t.is_some());
        assert!(b.can_replay());
        let (d, t) = read(b.replay()).await.unwrap();
        assert_eq!(d, "abcd");
        assert_eq!(t.unwrap().get("grpc-status").unwrap(), "0");
    }

    #[tokio::test]
    async fn retry_after_a_partial_read_continues_from_the_source() {
        let b = ReplayBody::new(frames(vec!["ab", "cd", "ef"], false), 16);
        let mut first = b.replay();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        drop(first);
        let (d, _) = read(b.replay()).await.unwrap();
        assert_eq!(d, "abcdef");
        assert_eq!(read(b.replay()).await.unwrap().0, "abcdef");
    }

    #[tokio::test]
    async fn big_body_streams_once_and_is_not_replayable() {
        let b = ReplayBody::new(frames(vec!["abcd", "efgh", "ijkl"], false), 6);
        let (d, _) = read(b.replay()).await.unwrap();
        assert_eq!(d, "abcdefghijkl");
        assert!(!b.can_replay());
        assert!(read(b.replay()).await.is_err());
    }

    #[tokio::test]
    async fn announced_big_body_is_never_kept() {
        let body = Full::new(Bytes::from(vec![b'x'; 100]))
            .map_err(|never| match never {})
            .boxed();
        let b = ReplayBody::new(body, 10);
        assert!(!b.can_replay());
        let first = b.replay();
        assert_eq!(read(first).await.unwrap().0.len(), 100);
        assert!(read(b.replay()).await.is_err());
    }

    #[tokio::test]
    async fn a_copy_waiting_on_the_source_is_woken_when_another_reads_it() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let b = ReplayBody::new(StreamBody::new(stream).boxed(), 64);
        let mut old = b.replay();
        let mut new = b.replay();
        let new_read = tokio::spawn(async move {
            let f = new.frame().await.unwrap().unwrap();
            f.into_data().unwrap()
        });
        tokio::task::yield_now().await;
        // The abandoned copy polls last, then data comes.
        let old_read = tokio::spawn(async move { old.frame().await.map(|f| f.is_ok()) });
        tokio::task::yield_now().await;
        tx.send(Ok(Frame::data(Bytes::from("x")))).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), new_read)
            .await
            .expect("the waiting copy was woken")
            .unwrap();
        assert_eq!(got, "x");
        let _ = old_read.await;
    }

    #[tokio::test]
    async fn empty_body_is_end_stream() {
        let body = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
        let b = ReplayBody::new(body, 0);
        assert!(b.replay().is_end_stream());
        assert!(b.can_replay());
        let e = ReplayBody::empty();
        assert!(e.handle().can_replay());
        assert_eq!(e.size_hint().exact(), Some(0));
        let (d, t) = read(e.replay()).await.unwrap();
        assert!(d.is_empty() && t.is_none());
    }
}
