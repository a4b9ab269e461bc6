//! The HTTP forwarding core: accept, route through a [`Router`], forward,
//! answer errors, drain on shutdown.
//!
//! Entry points: [`run`] serves every router and the admin server until
//! shutdown; [`serve`] (one server) takes an already-bound listener (so tests and the
//! integrator can bind `127.0.0.1:0`), a [`Router`], the server's
//! [`ServerParams`] and a [`Shutdown`] handle, as mini-redis's `server::run`.
//!
//! Modules, in the order a request meets them: `server` (listeners,
//! shutdown, TLS and HTTP/2 through hyper), `conn` (what a plain-text
//! connection speaks), `h1` (Switchyard's own HTTP/1.1 server loop),
//! `forward` (one request: identify, route, retry, forward), [`headers`]
//! (Linkerd's headers, hop-by-hop), `error` ([`ProxyError`] and its
//! `l5d-err` responses).
//!
//! [`Router`]: crate::routing::Router
//! [`ServerParams`]: crate::routing::ServerParams

mod conn;
mod error;
mod forward;
mod h1;
pub mod headers;
mod run;
mod server;

pub use error::ProxyError;

/// Request decoding without a connection, for tests and the fuzz target.
pub mod h1_decode {
    pub use super::h1::{DecodedRequest, decode, decode_lines};
}
pub use run::{RouterServers, run, run_with_admin_tls};
pub use server::{Shutdown, serve, shutdown_on_signals};

/// Body type flowing through the proxy both ways: streamed frame by frame,
/// never collected, trailers included.
pub type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;

/// Errors carried by [`ProxyBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    /// A response's body wrapper is moved up through every async layer of
    /// the request's future (each copies it into its own state): the
    /// telemetry it carries is boxed when there is any, so that it stays a
    /// few words. (It was 232 bytes, moved about ten times a request.)
    #[test]
    fn a_response_body_wrapper_stays_a_few_words() {
        use std::mem::size_of;
        assert!(size_of::<crate::telemetry::Follow>() <= 32);
        assert!(size_of::<super::conn::TrackedBody>() <= 48);
    }
}
