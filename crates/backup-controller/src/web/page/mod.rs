//! The dashboard's web page, rendered on the server (no assets from anywhere: the style and
//! the one small script are inline, admitted by their hashes, see [`assets`]). It signs in with a Kubernetes
//! token once, then works from the session cookie ([`super::session`]); every action is
//! checked with the project's RBAC exactly as the JSON API checks it, and every form carries
//! the session's CSRF token.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use serde::Deserialize;

use super::WebState;
use super::auth::{Caller, review};
use super::error::ApiError;
use super::handlers::visible_namespaces;
use super::session::{self, MAX_AGE_SECONDS};

mod assets;
mod backups;
mod drills;
mod overview;
mod restores;

pub use assets::CONTENT_SECURITY_POLICY;
use assets::{SCRIPT, STYLE};

pub use backups::{cluster, delete, download, events, run_now};
pub use overview::project;
pub use restores::{plan, restore, restores};

/// Escapes text for HTML.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page around `body`.
pub(super) fn layout(
    title: &str,
    session: Option<(&str, &str)>,
    body: &str,
    refresh: bool,
) -> String {
    let signed_in = match session {
        Some((user, csrf)) => format!(
            "<span>{}</span><form class=\"inline\" method=\"post\" action=\"/ui/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>Sign out</button></form>",
            esc(user),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">{}\
         <title>{} · backup-fleet</title><style>{STYLE}</style></head><body>\
         <header><a href=\"/ui/projects\"><strong>backup-fleet</strong></a>{signed_in}</header>\
         <main><h1>{}</h1>{body}</main><script>{SCRIPT}</script></body></html>",
        if refresh {
            "<meta http-equiv=\"refresh\" content=\"3\">"
        } else {
            ""
        },
        esc(title),
        esc(title)
    )
}

/// A page saying what went wrong, with the API's status.
pub(super) fn error_page(error: ApiError, session: Option<(&str, &str)>) -> Response {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p>",
        esc(&error.message)
    );
    (error.status, Html(layout("Error", session, &body, false))).into_response()
}

/// The signed-in caller and their session cookie value, or the response to send instead.
pub(super) async fn signed_in(state: &WebState, headers: &HeaderMap) -> Result<Session, Response> {
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| state.cookies.session_in(h))
        .map(str::to_string);
    let now = Timestamp::now().as_second();
    let Some((cookie, token)) =
        cookie.and_then(|c| state.session_key.open(&c, now).map(|t| (c, t)))
    else {
        return Err(Redirect::to("/ui").into_response());
    };
    match review(state, &token).await {
        Ok(caller) => Ok(Session {
            caller,
            csrf: state.session_key.csrf(&cookie),
            cookie,
            token,
        }),
        // Revoked or expired token: sign in again.
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Err(Redirect::to("/ui").into_response()),
        Err(e) => Err(error_page(e, None)),
    }
}

/// A signed-in caller and the session's CSRF token, which every form carries.
pub(super) struct Session {
    /// Who is signed in.
    pub caller: Caller,
    /// The session's CSRF token.
    pub csrf: String,
    cookie: String,
    /// The token the session holds (an event stream authorizes itself again with it).
    pub token: String,
}

impl Session {
    /// What [`layout`] shows of the session: the user, and the sign-out form's token.
    pub fn shown(&self) -> Option<(&str, &str)> {
        Some((self.caller.user.as_str(), self.csrf.as_str()))
    }
}

/// A form's CSRF field.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: String,
}

/// The refusal of a form whose CSRF token is not the session's.
pub(super) fn csrf_refused(state: &WebState, cookie: &str, sent: &str) -> Option<Response> {
    (!state.session_key.csrf_ok(cookie, sent)).then(|| {
        error_page(
            ApiError::forbidden(
                "this form is stale or was not sent by this page: reload and try again",
            ),
            None,
        )
    })
}

/// [`signed_in`] for a form post, whose CSRF token `sent` must also be the session's.
pub(super) async fn signed_in_form(
    state: &WebState,
    headers: &HeaderMap,
    sent: &str,
) -> Result<Session, Response> {
    let session = signed_in(state, headers).await?;
    match csrf_refused(state, &session.cookie, sent) {
        Some(refused) => Err(refused),
        None => Ok(session),
    }
}

/// `GET /ui`: the sign-in form, or the projects when signed in.
pub async fn index(State(state): State<WebState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(_) => Redirect::to("/ui/projects").into_response(),
        Err(_) => sign_in_form(&state, StatusCode::OK, None),
    }
}

/// The sign-in form, with a fresh sign-in cookie and the CSRF token derived from it.
fn sign_in_form(state: &WebState, status: StatusCode, problem: Option<&str>) -> Response {
    let value = match session::random_value() {
        Ok(value) => value,
        Err(e) => {
            return error_page(
                ApiError::upstream(format!("no randomness for the sign-in form: {e}")),
                None,
            );
        }
    };
    let csrf = state.session_key.signin_csrf(&value);
    (
        status,
        [(header::SET_COOKIE, state.cookies.set_signin(&value))],
        Html(login_page(problem, &csrf)),
    )
        .into_response()
}

fn login_page(problem: Option<&str>, csrf: &str) -> String {
    let problem = problem
        .map(|p| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(p)))
        .unwrap_or_default();
    layout(
        "Sign in",
        None,
        &format!(
            "{problem}<p>Sign in with a Kubernetes token of the management cluster (e.g. \
             <code>kubectl create token &lt;serviceaccount&gt; -n &lt;project&gt;</code>). \
             Your project's RBAC decides what you see and do.</p>\
             <form method=\"post\" action=\"/ui/login\"><label for=\"token\">Token</label><br>\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <textarea id=\"token\" name=\"token\" rows=\"4\" autofocus required></textarea><br>\
             <button type=\"submit\">Sign in</button></form>",
            esc(csrf)
        ),
        false,
    )
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    /// The form's CSRF token (missing from a form some other page made).
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/login`: checks the form came from the sign-in page (its cookie and CSRF token),
/// then the token (TokenReview), and starts the session.
pub async fn login(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let from_the_form = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| state.cookies.signin_in(h))
        .is_some_and(|value| state.session_key.signin_csrf_ok(value, &form.csrf));
    if !from_the_form {
        return sign_in_form(
            &state,
            StatusCode::FORBIDDEN,
            Some(
                "this sign-in was not sent by this page's form (or the form is over an hour old): sign in here",
            ),
        );
    }
    let token = form.token.trim();
    let caller = match review(&state, token).await {
        Ok(caller) => caller,
        Err(e) => return sign_in_form(&state, e.status, Some(&e.message)),
    };
    let expires = Timestamp::now().as_second() + MAX_AGE_SECONDS;
    match state.session_key.seal(token, expires) {
        Ok(cookie) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, state.cookies.set_session(&cookie)),
                (header::LOCATION, "/ui/projects".to_string()),
            ],
        )
            .into_response(),
        Err(problem) => {
            let problem = format!("{}: {problem}", caller.user);
            sign_in_form(&state, StatusCode::BAD_REQUEST, Some(&problem))
        }
    }
}

/// `POST /ui/logout`.
pub async fn logout(
    State(state): State<WebState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Ok(session) = signed_in(&state, &headers).await
        && let Some(refused) = csrf_refused(&state, &session.cookie, &form.csrf)
    {
        return refused;
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, state.cookies.clear_session()),
            (header::LOCATION, "/ui".to_string()),
        ],
    )
        .into_response()
}

/// `GET /ui/projects`.
pub async fn projects(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let signed = match signed_in(&state, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (caller, session) = (&signed.caller, signed.shown());
    match visible_namespaces(&state, caller).await {
        Ok(names) if names.is_empty() => Html(layout(
            "Projects",
            session,
            "<p>No project is visible to you: ask a project's owner for access.</p>",
            false,
        ))
        .into_response(),
        Ok(names) => {
            let items: String = names
                .iter()
                .map(|n| format!("<li><a href=\"/ui/projects/{0}\">{0}</a></li>", esc(n)))
                .collect();
            Html(layout(
                "Projects",
                session,
                &format!("<ul>{items}</ul>"),
                false,
            ))
            .into_response()
        }
        Err(e) => error_page(e, session),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
