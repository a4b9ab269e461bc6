//! Switchyard: a routing proxy driven by Finagle/Linkerd 1 delegation tables.
#![forbid(unsafe_code)]

pub mod cli;
pub mod dtab;
pub mod naming;
pub mod telemetry;
