//! Who calls, and what they may do: the bearer token is checked with a TokenReview, and every
//! action with a SubjectAccessReview on the matching resource in the project's namespace, so
//! the project's own RBAC decides (KKP's owners, editors and viewers).

use axum::http::{HeaderMap, header};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};

use super::WebState;
use super::error::{ApiError, ApiResult};

pub use crate::access::{Action, Caller};

/// Checks the request's bearer token with a TokenReview.
pub async fn authenticate(state: &WebState, headers: &HeaderMap) -> ApiResult<Caller> {
    let token = bearer(headers)?;
    review(state, token).await
}

/// The bearer token of a request.
pub(super) fn bearer(headers: &HeaderMap) -> ApiResult<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "send a Kubernetes bearer token: `Authorization: Bearer <token>` (e.g. from \
                 `kubectl create token <serviceaccount>`)",
            )
        })
}

/// Tokens longer than this are refused unread (a service account's is about 1 KiB, an OIDC
/// provider's a few).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Checks `token` with a TokenReview: who it belongs to, or 401; within the caller's rate
/// and the budget of invalid tokens ([`super::limits`]). An accepted token is remembered for
/// [`AUTH_TTL`](super::cache::AUTH_TTL), a refused one for
/// [`REFUSED_FOR`](super::limits::REFUSED_FOR) (by its SHA-256, never as text).
pub async fn review(state: &WebState, token: &str) -> ApiResult<Caller> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::unauthorized(format!(
            "the token is longer than {MAX_TOKEN_BYTES} bytes: not a Kubernetes token"
        )));
    }
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let limited = |limit: &'static str, e: ApiError| {
        state.metrics.api_limited(limit);
        e
    };
    state
        .limits
        .admit_caller(&key)
        .map_err(|e| limited("caller_rate", e))?;
    if let Some((_, caller)) = state.cache.tokens.get(&key) {
        return Ok(caller);
    }
    if let Some((_, refusal)) = state.limits.refused.get(&key) {
        return Err(ApiError::unauthorized(refusal));
    }
    if state.limits.vouched.get(&key).is_none() {
        state
            .limits
            .may_review()
            .map_err(|e| limited("invalid_tokens", e))?;
    }
    match review_now(&state.client, token, state.audience.as_deref()).await {
        Ok(caller) => {
            state.metrics.token_reviewed("accepted");
            state.limits.vouched.insert(key, ());
            state.cache.tokens.insert(key, caller.clone());
            Ok(caller)
        }
        Err(refused) if refused.status == axum::http::StatusCode::UNAUTHORIZED => {
            state.metrics.token_reviewed("refused");
            state.limits.review_failed();
            state.limits.refused.insert(key, refused.message.clone());
            Err(refused)
        }
        Err(failed) => {
            state.metrics.token_reviewed("failed");
            Err(failed)
        }
    }
}

/// Asks the API server who `token` belongs to; with `audience`, only a token issued for it
/// is accepted.
async fn review_now(
    client: &kube::Client,
    token: &str,
    audience: Option<&str>,
) -> ApiResult<Caller> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: audience.map(|a| vec![a.to_string()]),
        },
        ..TokenReview::default()
    };
    let reviewed = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| ApiError::upstream(format!("the token could not be reviewed: {e}")))?;
    let status = reviewed.status.unwrap_or_default();
    let for_us = match audience {
        None => true,
        Some(audience) => status
            .audiences
            .as_ref()
            .is_some_and(|given| given.iter().any(|a| a == audience)),
    };
    match (status.authenticated, status.user, for_us) {
        (Some(true), Some(user), true) => Ok(Caller::from(user)),
        (Some(true), Some(_), false) => Err(ApiError::unauthorized(format!(
            "the token was not issued for this dashboard: make one with `kubectl create token \
             <serviceaccount> --audience {}`",
            audience.unwrap_or_default()
        ))),
        _ => Err(ApiError::unauthorized(format!(
            "the token was not accepted by the management cluster{}",
            status.error.map(|e| format!(": {e}")).unwrap_or_default()
        ))),
    }
}

/// Whether `caller` may do `action` in `namespace` (a SubjectAccessReview; its answer is
/// remembered for [`AUTH_TTL`](super::cache::AUTH_TTL)).
pub async fn allowed(
    state: &WebState,
    caller: &Caller,
    namespace: &str,
    action: Action<'_>,
) -> ApiResult<bool> {
    let review = crate::access::review_of(caller, namespace, action);
    let key = serde_json::to_string(&review.spec)
        .map_err(|e| ApiError::upstream(format!("the access check could not be written: {e}")))?;
    if let Some((_, answer)) = state.cache.decisions.get(&key) {
        return Ok(answer);
    }
    let answer = crate::access::ask(&state.client, &review)
        .await
        .map_err(|e| ApiError::upstream(format!("the access check failed: {e}")))?;
    state.cache.decisions.insert(key, answer);
    Ok(answer)
}

/// The caller of a request (its bearer token), once allowed `see` and `act` in `namespace`
/// (see [`require`]).
pub async fn authorize(
    state: &WebState,
    headers: &HeaderMap,
    namespace: &str,
    see: Action<'_>,
    act: Option<Action<'_>>,
) -> ApiResult<Caller> {
    let caller = authenticate(state, headers).await?;
    require(state, &caller, namespace, see, act).await?;
    Ok(caller)
}

/// Requires `see` (else 404, as if absent) and then `act` (else 403).
pub async fn require(
    state: &WebState,
    caller: &Caller,
    namespace: &str,
    see: Action<'_>,
    act: Option<Action<'_>>,
) -> ApiResult<()> {
    if !allowed(state, caller, namespace, see).await? {
        return Err(ApiError::not_found(format!(
            "nothing of that kind in namespace {namespace:?}, or you may not see it"
        )));
    }
    if let Some(act) = act
        && !allowed(state, caller, namespace, act).await?
    {
        let what = match act.subresource {
            Some(sub) => format!("{}/{sub}", act.resource),
            None => act.resource.to_string(),
        };
        return Err(ApiError::forbidden(format!(
            "{} may not {} {what} in namespace {namespace}: ask the project's owner for that \
             permission",
            caller.user, act.verb
        )));
    }
    Ok(())
}
