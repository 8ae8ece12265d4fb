//! What a store answered, said in our words.
//!
//! A project names the endpoint, so whatever answers there writes the response bodies, and a
//! body repeated in a status message would make the controller a reader of any HTTP service it
//! can reach (and a writer of any text into the platform's conditions, events and dashboard).
//! So an object_store error is reported only through facts we recognise: our address refusal,
//! the HTTP status, the provider's error code (a short identifier such as `AccessDenied`), and
//! the kind of transport failure. Everything else in the chain, bodies and deserialisation
//! errors that may quote them included, stays out of messages. The full chain remains the
//! error's `source()` for the operator's logs.

use std::error::Error;

use object_store::client::{HttpError, HttpErrorKind};

/// The longest provider error code kept.
const MAX_CODE: usize = 64;

/// A short description of `err` made only of recognised facts (see the module documentation).
pub fn summary(err: &object_store::Error) -> String {
    if let Some(denied) = backup_net::denied_in(err) {
        return denied.to_string();
    }
    let text = chain_text(err);
    if let Some(status) = http_status(&text) {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        return match provider_code(&text) {
            Some(code) => format!("the store answered HTTP {status} {reason} ({code})"),
            None => format!("the store answered HTTP {status} {reason}"),
        }
        .replace("  ", " ");
    }
    if let Some(kind) = transport_failure(err) {
        return kind;
    }
    match err {
        object_store::Error::NotFound { .. } => "not found".into(),
        object_store::Error::AlreadyExists { .. } => "already exists".into(),
        object_store::Error::Precondition { .. } => "a precondition failed".into(),
        object_store::Error::PermissionDenied { .. } => "permission denied".into(),
        object_store::Error::Unauthenticated { .. } => "not authenticated".into(),
        object_store::Error::NotSupported { .. } => "not supported by this store".into(),
        object_store::Error::NotImplemented { .. } => "not implemented by this store".into(),
        _ => "the store's answer could not be used".into(),
    }
}

/// What is wrong with a stored JSON document, without its content: a store answers with
/// whatever it likes for any key, and serde's messages quote the values they reject.
pub fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "has a field of the wrong shape",
        serde_json::error::Category::Eof => "ends early",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// [`json_error`] for what a reader of gzipped JSON returns: the JSON's error, or the read's.
pub fn stored_json_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<serde_json::Error>())
    {
        Some(json) => json_error(json),
        None => format!("could not be read ({})", e.kind()),
    }
}

/// The error and all its sources, joined: for recognising facts, never for messages.
pub(crate) fn chain_text(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The HTTP status object_store reports ("... status code: 403 Forbidden ...").
fn http_status(text: &str) -> Option<u16> {
    let (_, after) = text.split_once("status code: ")?;
    let digits: String = after.chars().take(3).collect();
    digits.parse().ok().filter(|s| (100..600).contains(s))
}

/// The provider's error code: S3's and Azure's `<Code>…</Code>`, GCS's JSON `"reason"`. Kept
/// only when it is a short identifier.
pub(crate) fn provider_code(text: &str) -> Option<&str> {
    let candidates = [
        text.split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code),
        text.split_once("\"reason\": \"")
            .or_else(|| text.split_once("\"reason\":\""))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(code, _)| code),
    ];
    candidates.into_iter().flatten().find(|code| {
        !code.is_empty()
            && code.len() <= MAX_CODE
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    })
}

/// A transport failure in fixed words: connecting, TLS, timing out, or a broken response.
fn transport_failure(err: &object_store::Error) -> Option<String> {
    let mut source: Option<&(dyn Error + 'static)> = Some(err);
    let mut kind = None;
    let mut io = None;
    while let Some(s) = source {
        if let Some(http) = s.downcast_ref::<HttpError>() {
            kind.get_or_insert(http.kind());
        }
        if let Some(e) = s.downcast_ref::<std::io::Error>() {
            io.get_or_insert(e.kind());
        }
        source = s.source();
    }
    let text = chain_text(err).to_ascii_lowercase();
    let tls = ["certificate", "tls handshake", "invalid peer"]
        .iter()
        .any(|n| text.contains(n));
    let dns = text.contains("failed to lookup address") || text.contains("dns error");
    let phrase = match (kind?, io) {
        (_, _) if tls => "could not connect: the TLS handshake failed (check the endpoint's certificate and caCert)".to_string(),
        (_, _) if dns => "could not connect: the endpoint's host name did not resolve".to_string(),
        (HttpErrorKind::Timeout, _) => "timed out".to_string(),
        (HttpErrorKind::Connect, Some(io)) => format!("could not connect: {io}"),
        (HttpErrorKind::Connect, None) => "could not connect".to_string(),
        (HttpErrorKind::Interrupted, _) => "the connection was interrupted".to_string(),
        (HttpErrorKind::Decode, _) => "the store's answer could not be decoded".to_string(),
        _ => "the request failed".to_string(),
    };
    Some(phrase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Text(String);
    impl std::fmt::Display for Text {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl Error for Text {}

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Text(text.into())),
        }
    }

    #[test]
    fn a_status_and_code_are_kept_and_the_body_is_not() {
        let err = generic(
            "Error performing PUT http://127.0.0.1:1/b/x in 3ms - Server returned non-2xx status \
             code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
             <Message>secret internal text</Message></Error>",
        );
        let s = summary(&err);
        assert_eq!(s, "the store answered HTTP 403 Forbidden (AccessDenied)");
        assert!(!s.contains("secret"));
    }

    #[test]
    fn a_code_that_is_not_an_identifier_is_dropped() {
        let err = generic(
            "Server returned non-2xx status code: 500 Internal Server Error: \
             <Code>rm -rf / <script></Code>",
        );
        assert_eq!(
            summary(&err),
            "the store answered HTTP 500 Internal Server Error"
        );
        let gcs = generic("status code: 404 Not Found: {\"error\": {\"reason\": \"notFound\"}}");
        assert_eq!(
            summary(&gcs),
            "the store answered HTTP 404 Not Found (notFound)"
        );
    }

    #[test]
    fn what_is_not_recognised_says_nothing_of_the_answer() {
        let err = generic("invalid type: string \"ssh-rsa AAAA internal\", expected struct");
        let s = summary(&err);
        assert_eq!(s, "the store's answer could not be used");
    }

    #[test]
    fn transport_failures_are_fixed_words() {
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Connect,
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            )),
        };
        assert_eq!(summary(&err), "could not connect: connection refused");
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(HttpErrorKind::Timeout, Text("late".into()))),
        };
        assert_eq!(summary(&err), "timed out");
    }

    #[test]
    fn stored_json_is_described_without_its_content() {
        let e = serde_json::from_str::<u64>("\"internal-secret\"").unwrap_err();
        let text = json_error(&e);
        assert!(
            text.starts_with("has a field of the wrong shape (line 1"),
            "{text}"
        );
        assert!(!text.contains("internal-secret"));
        let io = std::io::Error::from(e);
        assert!(!stored_json_error(&io).contains("internal-secret"));
        let syntax = serde_json::from_str::<u64>("<html>internal-secret").unwrap_err();
        assert!(json_error(&syntax).starts_with("is not valid JSON"));
    }

    #[test]
    fn a_refused_address_is_named() {
        let denied = backup_net::AddressPolicy::default()
            .check_host("169.254.169.254")
            .unwrap_err();
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(HttpErrorKind::Connect, denied)),
        };
        assert!(
            summary(&err).contains("169.254.169.254"),
            "{}",
            summary(&err)
        );
    }
}
