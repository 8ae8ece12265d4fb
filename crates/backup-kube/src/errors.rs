//! The one classification of Kubernetes API errors, used by both engines and the controller:
//! whether retrying can help, which [`EngineError`] kind a failure is, and what may be said of
//! it ([`summary`]).

use backup_core::EngineError;

/// The HTTP status of an API error, `None` for transport and client-side errors.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the same request can succeed later unchanged: the apiserver was unreachable or
/// overloaded (transport errors, 429, 5xx), or another writer won a race (409 Conflict).
pub fn is_retryable(e: &kube::Error) -> bool {
    match status_code(e) {
        Some(code) => code == 409 || code == 429 || code >= 500,
        None => matches!(
            e,
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)
        ),
    }
}

/// The longest identifier (a Status reason, a field path) kept from an API server's answer.
const MAX_IDENTIFIER: usize = 64;

/// What may be said of `e` in a status, an event or the dashboard. A user cluster's API server
/// is whatever address its kubeconfig names, so its answers (a Status message, a body that is
/// not JSON) are never repeated: an API error is its HTTP code, its reason and the fields it
/// names (short identifiers only); an answer that is not the Kubernetes API's is said to be
/// so; a refused address says which; other failures happened here and are said as they are.
pub fn summary(e: &kube::Error) -> String {
    if let Some(denied) = backup_net::denied_in(e) {
        return denied.to_string();
    }
    match e {
        kube::Error::Api(status) => {
            let mut text = format!("the API server answered {}", status.code);
            if let Some(reason) = identifier(&status.reason) {
                text.push(' ');
                text.push_str(reason);
            }
            let fields: Vec<&str> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .filter_map(|c| identifier(&c.field))
                .take(3)
                .collect();
            if !fields.is_empty() {
                text.push_str(&format!(" ({})", fields.join(", ")));
            }
            text
        }
        kube::Error::SerdeError(_) | kube::Error::FromUtf8(_) => {
            "the server's answer is not the Kubernetes API's".to_string()
        }
        other => other.to_string(),
    }
}

/// `text` when it is a short identifier or field path (`Forbidden`, `spec.data[key]`).
fn identifier(text: &str) -> Option<&str> {
    (!text.is_empty()
        && text.len() <= MAX_IDENTIFIER
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '[' | ']')))
    .then_some(text)
}

/// The engine error for `e`, met while doing `context`.
pub fn engine_error(context: impl std::fmt::Display, e: kube::Error) -> EngineError {
    let message = format!("{context}: {}", summary(&e));
    match status_code(&e) {
        Some(401 | 403) => EngineError::Forbidden(message),
        Some(400 | 422) => EngineError::Invalid(message),
        _ if is_retryable(&e) => EngineError::Unavailable {
            reason: match status_code(&e) {
                None => format!("{message}; check that the apiserver is reachable"),
                Some(_) => message,
            },
        },
        _ => EngineError::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(&format!("status {code}"), "Reason")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn overload_outage_and_conflicts_are_retried_the_rest_is_not() {
        for code in [409, 429, 500, 503] {
            assert!(is_retryable(&api(code)), "{code}");
            assert!(engine_error("x", api(code)).is_retryable() || code == 409);
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(!is_retryable(&api(code)), "{code}");
        }
        assert_eq!(engine_error("x", api(403)).metric_label(), "forbidden");
        assert_eq!(engine_error("x", api(422)).metric_label(), "invalid");
        assert_eq!(engine_error("x", api(503)).metric_label(), "unavailable");
        assert_eq!(engine_error("x", api(404)).metric_label(), "other");
        let e = engine_error("listing pods", api(403)).to_string();
        assert!(
            e.contains("listing pods: the API server answered 403 Reason;"),
            "{e}"
        );
    }

    #[test]
    fn an_api_servers_words_are_not_repeated() {
        let mut status =
            kube::core::Status::failure("ssh-rsa AAAA internal <script>", "Invalid").with_code(422);
        status.details = Some(
            serde_json::from_value(serde_json::json!({
                "causes": [
                    {"field": "data.key", "message": "secret text", "reason": "FieldValueInvalid"},
                    {"field": "bad field <x>", "message": "m", "reason": "r"},
                ]
            }))
            .unwrap(),
        );
        let text = summary(&kube::Error::Api(status.boxed()));
        assert_eq!(text, "the API server answered 422 Invalid (data.key)");
        let odd = kube::core::Status::failure("m", "not an identifier!").with_code(500);
        assert_eq!(
            summary(&kube::Error::Api(odd.boxed())),
            "the API server answered 500"
        );
        let serde = serde_json::from_str::<serde_json::Value>("<html>secret").unwrap_err();
        assert_eq!(
            summary(&kube::Error::SerdeError(serde)),
            "the server's answer is not the Kubernetes API's"
        );
    }
}
