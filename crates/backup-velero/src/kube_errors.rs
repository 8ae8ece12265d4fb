//! The one classification of Kubernetes API errors, used by both engines and the controller:
//! whether retrying can help, and which [`EngineError`] kind a failure is.

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

/// The engine error for `e`, met while doing `context`.
pub fn engine_error(context: impl std::fmt::Display, e: kube::Error) -> EngineError {
    let message = match &e {
        kube::Error::Api(s) => format!("{context}: {}", s.message),
        _ => format!("{context}: {e}"),
    };
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
        assert!(e.contains("listing pods: status 403"), "{e}");
    }
}
