//! Switchyard: a routing proxy for service-to-service traffic, driven by
//! Finagle/Linkerd 1 delegation tables (dtabs).
//!
//! A request flows left to right; admin and telemetry stand at the side:
//!
//! ```text
//!  config ──▶ dtab (parse) ──▶ naming (namers, live binding) ──▶ routing (identify → Dst → bound tree → client)
//!                                                                      │
//!                              proxy (accept, forward, Linkerd headers, errors) ◀──┘
//!
//!  at the side: admin (ping, config, delegator, client state, shutdown), telemetry (tracing)
//! ```
//!
//! * [`config`]: Linkerd 1's YAML/JSON config, typed and validated, with
//!   file:line:col errors.
//! * [`dtab`]: the name algebra (Path, NameTree, Dentry, Dtab), its pest
//!   grammar, Finagle's lookup/bind/simplify and the delegation trace. No I/O.
//! * [`naming`]: namers (io.l5d.fs, /$/inet), the dtab file watcher and the
//!   [`naming::Interpreter`], which keeps bound trees current as watches.
//! * [`routing`]: identifiers, the per-router binding and client caches
//!   (published with arc-swap).
//! * [`client`]: one client per bound name: endpoint choice, requeues,
//!   connection pools, and its own HTTP/1.1 client (no task per connection).
//! * [`proxy`]: the servers and forwarding, graceful shutdown: its own
//!   HTTP/1.1 server for plain-text connections (one loop per connection,
//!   no buffer while idle), hyper's for HTTP/2 and for TLS.
//! * [`admin`]: the admin server.
//! * [`clock`]: the precise clock for latencies and a coarse one (a kernel
//!   tick) for the request path's other bookkeeping.
//! * [`app`]: wires a config into all of the above; [`cli`]: the commands.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod client;
pub mod config;
pub mod dtab;
pub mod naming;
pub mod proxy;
pub mod routing;
pub mod service;
pub mod tls;

pub mod admin;
pub mod clock;
pub mod telemetry;

pub mod app;
pub mod cli;
