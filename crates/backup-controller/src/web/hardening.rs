//! Headers every response of the API and the page carries: the page's Content-Security-Policy
//! (its own style and script only, never framed), nothing kept in caches (pages and answers
//! hold a project's data, and a shared computer's back button must not show them after
//! sign-out), no MIME sniffing, no referrer leaving the page.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::page::CONTENT_SECURITY_POLICY;

/// Adds the headers to `request`'s response.
pub async fn with_secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The policy is ASCII by construction; were it not, nothing at all would be admitted.
    let policy = HeaderValue::from_str(&CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
