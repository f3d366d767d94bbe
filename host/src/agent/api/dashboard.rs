//! The dashboard at `/` and `/app`: one self-contained HTML page (inline
//! CSS and script, nothing fetched from elsewhere) that reads
//! `/api/summary`, `/api/machines` and `/api/ledger` every 2 s. Opened as
//! `/#token=...` it sends the token as a bearer token.
//!
//! The page never puts API text into HTML (`textContent` only): ledger
//! values come from any member. Each member is an element with
//! `data-node-id` holding its host name and IPv4 as text, and the body gets
//! `data-loaded="1"` after the first refresh, for the browser tests.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_never_writes_html() {
        assert!(PAGE.starts_with("<!doctype html>"));
        for external in ["src=\"http", "href=\"http", "src=\"//", "@import", "url("] {
            assert!(!PAGE.contains(external), "{external}");
        }
        assert!(!PAGE.contains("innerHTML"));
        assert!(!PAGE.contains("outerHTML"));
        assert!(!PAGE.contains("insertAdjacentHTML"));
        assert!(!PAGE.contains("document.write"));
        for hook in [
            "data-node-id",
            "dataset.loaded = \"1\"",
            "/api/summary",
            "/api/machines",
            "/api/ledger",
        ] {
            assert!(PAGE.contains(hook), "{hook}");
        }
    }
}
