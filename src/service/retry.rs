//! The service-level loop: attempts, classification, retries within the
//! budget with backoff, all under the request's deadline.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::Service;
use super::body::ReplayBody;
use super::classify::{ResponseClass, names};
use super::trailers::ClassTrailers;
use crate::client::Report;
use crate::proxy::headers::Verbatim;
use crate::proxy::{BoxError, ProxyBody, ProxyError};

/// The most attempts one request makes, whatever the budget says.
pub const MAX_ATTEMPTS: usize = 25;

/// What ends a request early, and how to say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The service's `totalTimeoutMs`.
    TotalTimeout(Duration),
    /// A deadline the caller propagated (`l5d-ctx-deadline`, `grpc-timeout`).
    Propagated,
}

/// When the request must be answered by, and why.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// The instant (tokio's clock).
    pub at: Instant,
    /// What set it.
    pub why: Expiry,
}

/// One attempt's response, and the client's report handle for its endpoint.
pub struct Attempted {
    /// The response.
    pub response: Response<ProxyBody>,
    /// Told how the service classified the response (failure accrual).
    pub report: Option<Report>,
    /// The response's header lines, when the client kept them as sent
    /// ([`crate::client::Reply::verbatim`]).
    pub verbatim: Option<Verbatim>,
}

impl From<Response<ProxyBody>> for Attempted {
    fn from(response: Response<ProxyBody>) -> Attempted {
        Attempted {
            response,
            report: None,
            verbatim: None,
        }
    }
}

/// The result of one attempt.
pub type AttemptResult = Result<Attempted, ProxyError>;

/// The result of a request.
pub type CallResult = Result<Answer, ProxyError>;

/// The response to a request, with the class its `l5d-success-class`
/// header says, so that the caller need not look it up again; `None` when
/// the class waits for gRPC trailers still streaming.
pub struct Answer {
    pub response: Response<ProxyBody>,
    pub class: Option<ResponseClass>,
    /// Whether the response's head holds `l5d-success-class` (or needs
    /// none: the class waits for trailers); with [`Mark::Caller`] the
    /// caller writes it when not.
    pub in_head: bool,
    /// The response's header lines, when kept as sent ([`Attempted::verbatim`]).
    pub verbatim: Option<Verbatim>,
}

/// Where a response's class goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Into its head, as `l5d-success-class`.
    Head,
    /// To the caller ([`Answer::class`]), which writes the header itself;
    /// into the head only when the response may carry one from downstream
    /// (it is replaced there).
    Caller,
}

/// Run the attempts of one request to `svc`. `attempt(body, n)` sends the
/// `n`th attempt (1-based); `body` is a handle to make copies of the
/// request body from (see [`ReplayBody::replay`]). Returns the first
/// response or error that is not retried (a success, a non-retryable
/// failure, or the last failure when retrying is not possible: body too big,
/// budget spent, [`MAX_ATTEMPTS`]); a timeout when `limit` passes first.
pub async fn call<F, Fut>(
    svc: &Service,
    method: &Method,
    body: ReplayBody,
    limit: Option<Limit>,
    attempt: F,
) -> CallResult
where
    F: FnMut(ReplayBody, usize) -> Fut,
    Fut: Future<Output = AttemptResult>,
{
    call_marking(svc, method, body, limit, Mark::Head, attempt).await
}

/// [`call`], with the response's class going where `mark` says.
pub async fn call_marking<F, Fut>(
    svc: &Service,
    method: &Method,
    body: ReplayBody,
    limit: Option<Limit>,
    mark: Mark,
    attempt: F,
) -> CallResult
where
    F: FnMut(ReplayBody, usize) -> Fut,
    Fut: Future<Output = AttemptResult>,
{
    svc.stats.requests.fetch_add(1, Ordering::Relaxed);
    svc.budget.deposit();
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    // The loop's future is made where it is awaited: made first and then
    // moved in, it was copied once more per request.
    let Some(limit) = limit else {
        return attempts_loop(svc, method, body, mark, attempt, &attempts).await;
    };
    let run = attempts_loop(svc, method, body, mark, attempt, &attempts);
    match tokio::time::timeout_at(limit.at, run).await {
        Ok(r) => r,
        Err(_) => {
            svc.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            Err(expired(svc, limit.why, attempts.load(Ordering::Relaxed)))
        }
    }
}

/// The error for a request whose time ran out.
pub fn expired(svc: &Service, why: Expiry, attempts: usize) -> ProxyError {
    match why {
        Expiry::TotalTimeout(timeout) => ProxyError::TotalTimeout {
            dst: svc.name.clone(),
            timeout,
            attempts,
        },
        Expiry::Propagated => ProxyError::DeadlineExceeded {
            dst: svc.name.clone(),
            attempts,
        },
    }
}

async fn attempts_loop<F, Fut>(
    svc: &Service,
    method: &Method,
    body: ReplayBody,
    mark: Mark,
    mut attempt: F,
    count: &std::sync::atomic::AtomicUsize,
) -> CallResult
where
    F: FnMut(ReplayBody, usize) -> Fut,
    Fut: Future<Output = AttemptResult>,
{
    let p = &svc.params;
    let mut waits = p.backoff.waits();
    let mut n = 0;
    loop {
        n += 1;
        count.store(n, Ordering::Relaxed);
        if n > 1 {
            svc.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let result = attempt(body.handle(), n).await;
        // Holding a gRPC stream to read its trailers only pays when a
        // retry could follow (asked only then: the budget takes a lock).
        let may_retry = || n < MAX_ATTEMPTS && body.can_replay() && svc.budget.balance() > 0;
        let (class, result) = classify(svc, method, result, mark, may_retry).await;
        if !class.is_retryable() {
            // Say why an attempt failure was final, not just that it failed.
            return result.map_err(|last| match reached_app(&last) {
                Some(_) => ProxyError::NotRetried {
                    attempts: n,
                    reason: format!(
                        "the request may have reached the application and responseClassifier {} does not retry {method}",
                        p.response_classifier
                    ),
                    last: Box::new(last),
                },
                None => last,
            });
        }
        let stop = if n >= MAX_ATTEMPTS {
            Some(format!("attempt limit ({MAX_ATTEMPTS}) reached"))
        } else if !body.can_replay() {
            Some(format!(
                "the request body is larger than retryBufferSize.requestBytes ({} bytes)",
                p.retry_buffer_size.request_bytes
            ))
        } else if !svc.budget.try_withdraw() {
            svc.stats.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            svc.metrics.budget_exhausted.increment(1);
            Some(format!("retry budget of {} exhausted", svc.name))
        } else {
            None
        };
        if let Some(reason) = stop {
            tracing::debug!(dst = %svc.name, attempts = n, %reason, "retryable failure not retried");
            return result.map_err(|last| ProxyError::NotRetried {
                attempts: n,
                reason,
                last: Box::new(last),
            });
        }
        // Let the failed response go (its connection returns to the pool).
        drop(result);
        svc.metrics.retries.increment(1);
        let wait = waits.next().unwrap_or_default();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        tracing::debug!(dst = %svc.name, attempt = n + 1, "retrying");
    }
}

/// Classify an attempt's result and mark a response with `l5d-success-class`.
async fn classify(
    svc: &Service,
    method: &Method,
    result: AttemptResult,
    mark: Mark,
    may_retry: impl FnOnce() -> bool,
) -> (ResponseClass, CallResult) {
    let c = &svc.params.response_classifier;
    match result {
        Err(e) => {
            let class = match reached_app(&e) {
                Some(reached) => c.classify_error(method, reached),
                None => ResponseClass::Failure,
            };
            (class, Err(e))
        }
        Ok(Attempted {
            response: resp,
            report,
            verbatim,
        }) => {
            let (resp, class) = match c.classify_response(method, resp.status(), resp.headers()) {
                Some(class) => (resp, class),
                // The trailers will tell, but no retry could follow: pass the
                // stream on at once; its trailers get the class, and the
                // endpoint hears it, when they come.
                None if !may_retry() => {
                    let resp = resp.map(|b| ClassTrailers::pending(b, c.clone(), report).boxed());
                    let answer = Answer {
                        response: resp,
                        class: None,
                        in_head: true,
                        verbatim,
                    };
                    return (ResponseClass::Success, Ok(answer));
                }
                None => {
                    let p = &svc.params;
                    let (resp, end) = peek_trailers(
                        resp,
                        p.retry_buffer_size.response_bytes,
                        p.classification_timeout,
                    )
                    .await;
                    match end {
                        Some(trailers) => {
                            let class = c.classify_trailers(trailers.as_ref());
                            // In the head (the stream was read ahead) and
                            // where gRPC looks for it, the trailers.
                            let resp = resp.map(|b| ClassTrailers::known(b, class).boxed());
                            (resp, class)
                        }
                        // Still streaming: too late to retry; the trailers
                        // will tell when they come.
                        None => {
                            let resp =
                                resp.map(|b| ClassTrailers::pending(b, c.clone(), report).boxed());
                            let answer = Answer {
                                response: resp,
                                class: None,
                                in_head: true,
                                verbatim,
                            };
                            return (ResponseClass::Success, Ok(answer));
                        }
                    }
                }
            };
            if let Some(r) = report {
                r.classify(if class.is_success() {
                    crate::client::ResponseClass::Success
                } else {
                    crate::client::ResponseClass::Failure
                });
            }
            let mut resp = resp;
            let in_head =
                mark == Mark::Head || crate::service::classify::downstream_said(resp.headers());
            if in_head {
                resp.headers_mut().insert(
                    names::L5D_SUCCESS_CLASS,
                    HeaderValue::from_static(class.success_class()),
                );
            }
            let answer = Answer {
                response: resp,
                class: Some(class),
                in_head,
                verbatim,
            };
            (class, Ok(answer))
        }
    }
}

/// Whether a failed attempt may have reached the application; `None` for
/// failures that are not about an attempt (routing, bad request).
fn reached_app(e: &ProxyError) -> Option<bool> {
    match e {
        ProxyError::Connect { .. } | ProxyError::PoolExhausted { .. } => Some(false),
        ProxyError::Timeout { .. } | ProxyError::Upstream { .. } => Some(true),
        _ => None,
    }
}

/// Read a response body for at most `timeout` and `limit` bytes, to see its
/// trailers. Returns the response (its body whole again) and, if the stream
/// ended in that time, its trailers.
pub async fn peek_trailers(
    resp: Response<ProxyBody>,
    limit: usize,
    timeout: Duration,
) -> (Response<ProxyBody>, Option<Option<HeaderMap>>) {
    let (parts, mut body) = resp.into_parts();
    let mut frames: VecDeque<Result<Frame<Bytes>, BoxError>> = VecDeque::new();
    let mut bytes = 0usize;
    let mut trailers = None;
    let mut ended = body.is_end_stream();
    let until = Instant::now() + timeout;
    while !ended && bytes <= limit {
        match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => break,
            Ok(None) => ended = true,
            Ok(Some(Err(e))) => {
                frames.push_back(Err(e));
                break;
            }
            Ok(Some(Ok(f))) => {
                if let Some(t) = f.trailers_ref() {
                    trailers = Some(t.clone());
                }
                bytes = bytes.saturating_add(f.data_ref().map_or(0, Bytes::len));
                frames.push_back(Ok(f));
                ended = body.is_end_stream();
            }
        }
    }
    let rest = (!ended).then_some(body);
    let body = Prefixed { frames, rest }.boxed();
    (Response::from_parts(parts, body), ended.then_some(trailers))
}

/// Frames already read, then the rest of the body.
struct Prefixed {
    frames: VecDeque<Result<Frame<Bytes>, BoxError>>,
    rest: Option<ProxyBody>,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(f));
        }
        match self.rest.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self
            .rest
            .as_ref()
            .map_or(SizeHint::with_exact(0), |b| b.size_hint());
        let kept: u64 = self
            .frames
            .iter()
            .filter_map(|f| f.as_ref().ok()?.data_ref().map(|d| d.len() as u64))
            .sum();
        // Upper first: SizeHint insists that lower never exceeds upper.
        let mut h = SizeHint::new();
        if let Some(u) = rest.upper() {
            h.set_upper(u.saturating_add(kept));
        }
        h.set_lower(rest.lower().saturating_add(kept));
        h
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn prefixed_size_hint_adds_the_kept_frames() {
        let rest = Full::new(Bytes::from("abc"))
            .map_err(|n| match n {})
            .boxed();
        let p = Prefixed {
            frames: VecDeque::from([Ok(Frame::data(Bytes::from("xy")))]),
            rest: Some(rest),
        };
        assert_eq!(p.size_hint().exact(), Some(5));
        let p = Prefixed {
            frames: VecDeque::from([Ok(Frame::data(Bytes::from("xy")))]),
            rest: None,
        };
        assert_eq!(p.size_hint().exact(), Some(2));
    }
    use std::sync::atomic::AtomicUsize;

    use http::StatusCode;
    use http_body_util::{Full, StreamBody};

    use super::*;
    use crate::service::classify::L5D_SUCCESS_CLASS;
    use crate::service::{Backoff, BudgetConfig, Classifier, ServiceParams};

    fn svc(classifier: Classifier, budget: BudgetConfig, backoff: Backoff) -> Service {
        Service::new(
            "/svc/test".parse().unwrap(),
            ServiceParams {
                response_classifier: classifier,
                budget,
                backoff,
                ..ServiceParams::default()
            },
        )
    }

    fn body(s: &'static str) -> ReplayBody {
        ReplayBody::new(
            Full::new(Bytes::from(s)).map_err(|n| match n {}).boxed(),
            1024,
        )
    }

    fn status(s: u16) -> AttemptResult {
        let mut r = Response::new(Full::new(Bytes::new()).map_err(|n| match n {}).boxed());
        *r.status_mut() = StatusCode::from_u16(s).unwrap();
        Ok(r.into())
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_failures_with_backoff_until_success() {
        let s = svc(
            Classifier::RetryableRead5XX,
            BudgetConfig::default(),
            Backoff::Constant {
                ms: Duration::from_millis(100),
            },
        );
        let seen = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let r = call(&s, &Method::GET, body("hi"), None, |b, n| {
            let seen = seen.clone();
            async move {
                let got = b.replay().collect().await.unwrap().to_bytes();
                assert_eq!(got, "hi");
                seen.fetch_add(1, Ordering::Relaxed);
                if n < 3 { status(503) } else { status(200) }
            }
        })
        .await
        .unwrap();
        assert_eq!(r.response.status(), 200);
        assert_eq!(r.response.headers()[L5D_SUCCESS_CLASS], "1.0");
        assert_eq!(r.class, Some(ResponseClass::Success));
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert_eq!(s.stats.json()["retries"], 2);
        assert_eq!(s.stats.json()["attempts"], 3);
        assert_eq!(s.stats.json()["requests"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_and_budget_exhaustion_return_the_last_failure() {
        let none = BudgetConfig {
            min_retries_per_sec: 0,
            percent_can_retry: 0.0,
            ttl: Duration::from_secs(10),
        };
        let s = svc(Classifier::RetryableRead5XX, none, Backoff::default());
        let r = call(&s, &Method::GET, body(""), None, |_, _| async {
            status(503)
        })
        .await
        .unwrap();
        assert_eq!(r.response.status(), 503);
        assert_eq!(r.response.headers()[L5D_SUCCESS_CLASS], "0.0");
        assert_eq!(r.class.map(ResponseClass::is_success), Some(false));
        assert_eq!(s.stats.json()["budgetExhausted"], 1);
        let s = svc(
            Classifier::RetryableRead5XX,
            BudgetConfig::default(),
            Backoff::default(),
        );
        let r = call(&s, &Method::POST, body(""), None, |_, _| async {
            status(503)
        })
        .await;
        assert_eq!(r.unwrap().response.status(), 503);
        assert_eq!(s.stats.json()["attempts"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn total_timeout_covers_retries_and_backoff() {
        let s = svc(
            Classifier::RetryableAll5XX,
            BudgetConfig::default(),
            Backoff::Constant {
                ms: Duration::from_millis(40),
            },
        );
        let limit = Limit {
            at: Instant::now() + Duration::from_millis(100),
            why: Expiry::TotalTimeout(Duration::from_millis(100)),
        };
        let r = call(&s, &Method::POST, body("x"), Some(limit), |_, _| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            status(503)
        })
        .await;
        match r {
            Err(ProxyError::TotalTimeout { attempts, .. }) => assert_eq!(attempts, 2),
            other => panic!("{:?}", other.map(|r| r.response.status())),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn connect_failures_retry_even_under_the_default_classifier() {
        let s = svc(
            Classifier::default(),
            BudgetConfig::default(),
            Backoff::default(),
        );
        let r = call(&s, &Method::POST, body("x"), None, |_, n| async move {
            if n == 1 {
                Err(ProxyError::Connect {
                    dst: "/svc/test".parse().unwrap(),
                    client: "/$/inet/127.0.0.1/1".parse().unwrap(),
                    tried: vec![],
                    cause: "refused".into(),
                })
            } else {
                status(200)
            }
        })
        .await;
        assert_eq!(r.unwrap().response.status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_status_in_trailers_is_classified_and_retried() {
        let s = svc(
            "io.l5d.h2.grpc.default".parse().unwrap(),
            BudgetConfig::default(),
            Backoff::default(),
        );
        let r = call(&s, &Method::POST, body("x"), None, |_, n| async move {
            let mut t = HeaderMap::new();
            t.insert(
                "grpc-status",
                if n == 1 { "14" } else { "0" }.parse().unwrap(),
            );
            let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                vec![Ok(Frame::data(Bytes::from("msg"))), Ok(Frame::trailers(t))];
            Ok(Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed()).into())
        })
        .await
        .unwrap();
        assert_eq!(r.response.headers()[L5D_SUCCESS_CLASS], "1.0");
        assert_eq!(r.class, Some(ResponseClass::Success));
        let c = r.response.into_body().collect().await.unwrap();
        assert_eq!(c.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(s.stats.json()["attempts"], 2);
    }
}
