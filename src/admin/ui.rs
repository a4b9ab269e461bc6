//! The admin dashboard and the dtab playground: static pages compiled into
//! the binary, so they work offline and need no files next to it. The pages
//! poll the admin JSON endpoints themselves.

use bytes::Bytes;
use http::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http_body_util::Full;

/// `/`: per-router traffic, clients with their endpoints, the dtab.
pub(super) const DASHBOARD: &str = include_str!("ui/index.html");
/// `/delegator`: the dtab playground.
pub(super) const DELEGATOR: &str = include_str!("ui/delegator.html");
/// The pages' script.
pub(super) const APP_JS: &str = include_str!("ui/app.js");
/// The pages' style sheet.
pub(super) const STYLE_CSS: &str = include_str!("ui/style.css");

/// An HTML page.
pub(super) fn page(html: &'static str) -> Response<Full<Bytes>> {
    asset(html, "text/html; charset=utf-8")
}

/// A static asset; not cached, so a new binary's pages show at once.
pub(super) fn asset(body: &'static str, ctype: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
