//! `l5d-success-class` in trailers, for responses whose class only their
//! trailers tell (gRPC: `grpc-status` comes after the messages).
//!
//! The response head has gone downstream long before the status is known,
//! so the class cannot ride in a header. Linkerd puts it where the status
//! is: in the trailers. The body below watches the stream for its trailers,
//! classifies by them (a downstream hop's own `l5d-success-class` trailer
//! wins, as its header would), writes the class into them, and reports it
//! to the endpoint that answered (failure accrual) once, when it is known.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderValue;
use http_body::{Body, Frame, SizeHint};

use super::classify::{Classifier, L5D_SUCCESS_CLASS, ResponseClass};
use crate::client::Report;
use crate::proxy::{BoxError, ProxyBody};

/// What the body knows of the response's class.
enum Class {
    /// Already classified (the trailers were read ahead to decide a retry):
    /// only written into the trailers.
    Known(ResponseClass),
    /// To be classified by the trailers when they come, then reported.
    Pending {
        classifier: Classifier,
        report: Option<Report>,
    },
    /// Written and reported.
    Done,
}

/// A response body that writes `l5d-success-class` into its trailers.
pub struct ClassTrailers {
    inner: ProxyBody,
    class: Class,
}

impl ClassTrailers {
    /// A body whose class is already known (its trailers were read ahead).
    pub fn known(inner: ProxyBody, class: ResponseClass) -> ClassTrailers {
        ClassTrailers {
            inner,
            class: Class::Known(class),
        }
    }

    /// A body to classify by its trailers with `classifier`; the class is
    /// reported through `report` when known (at drop, before that, the
    /// report's own default applies).
    pub fn pending(inner: ProxyBody, classifier: Classifier, report: Option<Report>) -> Self {
        ClassTrailers {
            inner,
            class: Class::Pending { classifier, report },
        }
    }

    /// Settle the class from `trailers` (`None`: the stream ended without
    /// them, or failed): report it, and return it.
    fn settle(&mut self, trailers: Option<&HeaderMap>, failed: bool) -> Option<ResponseClass> {
        match std::mem::replace(&mut self.class, Class::Done) {
            Class::Known(c) => Some(c),
            Class::Pending { classifier, report } => {
                let class = if failed {
                    ResponseClass::Failure
                } else {
                    classifier.classify_trailers(trailers)
                };
                if let Some(r) = report {
                    r.classify(if class.is_success() {
                        crate::client::ResponseClass::Success
                    } else {
                        crate::client::ResponseClass::Failure
                    });
                }
                Some(class)
            }
            Class::Done => None,
        }
    }
}

impl Body for ClassTrailers {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(mut trailers) => {
                    if let Some(class) = this.settle(Some(&trailers), false) {
                        trailers.insert(
                            L5D_SUCCESS_CLASS,
                            HeaderValue::from_static(class.success_class()),
                        );
                    }
                    Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => {
                this.settle(None, true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.settle(None, false);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn stream(trailers: Option<&[(&'static str, &'static str)]>) -> ProxyBody {
        let mut v: Vec<Result<Frame<Bytes>, BoxError>> = vec![Ok(Frame::data(Bytes::from("m")))];
        if let Some(t) = trailers {
            let mut h = HeaderMap::new();
            for (k, val) in t {
                h.insert(*k, HeaderValue::from_static(val));
            }
            v.push(Ok(Frame::trailers(h)));
        }
        StreamBody::new(futures_util::stream::iter(v)).boxed()
    }

    fn grpc() -> Classifier {
        "io.l5d.h2.grpc.default".parse().unwrap()
    }

    async fn class_of(b: ClassTrailers) -> Option<String> {
        let c = b.collect().await.unwrap();
        c.trailers()
            .and_then(|t| t.get(L5D_SUCCESS_CLASS))
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn grpc_status_in_trailers_sets_the_class_there() {
        let ok = ClassTrailers::pending(stream(Some(&[("grpc-status", "0")])), grpc(), None);
        assert_eq!(class_of(ok).await.as_deref(), Some("1.0"));
        let bad = ClassTrailers::pending(stream(Some(&[("grpc-status", "14")])), grpc(), None);
        assert_eq!(class_of(bad).await.as_deref(), Some("0.0"));
        let known = ClassTrailers::known(
            stream(Some(&[("grpc-status", "3")])),
            ResponseClass::Failure,
        );
        assert_eq!(class_of(known).await.as_deref(), Some("0.0"));
        // No trailers: nothing to write into.
        let none = ClassTrailers::pending(stream(None), grpc(), None);
        assert_eq!(class_of(none).await, None);
    }

    #[tokio::test]
    async fn a_downstream_class_in_trailers_is_honoured() {
        let b = ClassTrailers::pending(
            stream(Some(&[("grpc-status", "0"), (L5D_SUCCESS_CLASS, "0.0")])),
            grpc(),
            None,
        );
        assert_eq!(class_of(b).await.as_deref(), Some("0.0"));
        let b = ClassTrailers::pending(
            stream(Some(&[("grpc-status", "14"), (L5D_SUCCESS_CLASS, "1.0")])),
            grpc(),
            None,
        );
        assert_eq!(class_of(b).await.as_deref(), Some("1.0"));
    }
}
