//! Switchyard: a routing proxy driven by Finagle/Linkerd 1 delegation tables.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod dtab;
pub mod naming;
pub mod proxy;
pub mod routing;
pub mod telemetry;
