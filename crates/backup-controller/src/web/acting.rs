//! Writes the dashboard makes for a signed-in person are made *as* that person: Kubernetes
//! impersonation of their user name, uid, groups and extra, exactly as the TokenReview of
//! their token returned them. RBAC, the admission webhook and the audit log then see the
//! person (the audit event names the controller as `user` and the person as
//! `impersonatedUser`), not the controller.
//!
//! Only identities a TokenReview has just returned are impersonated, never a name a request
//! states. A caller whose identity the controller may not impersonate (an extra key outside
//! the chart's `api.impersonate.extras`, a group outside `api.impersonate.groups`) is refused
//! by the API server: nothing is written with fewer attributes than the person has.

use http::{HeaderName, HeaderValue, Request};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::Request as KubeRequest;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::Caller;

/// Why a write as the caller could not even be sent.
#[derive(Debug, thiserror::Error)]
pub enum ActingError {
    /// The identity holds text no HTTP header can carry.
    #[error(
        "cannot act as {user:?}: their {what} holds characters an impersonation header cannot \
         carry; use the kubectl equivalent instead"
    )]
    Unsendable {
        /// Whose identity.
        user: String,
        /// Which part of it.
        what: String,
    },
    /// The request could not be built.
    #[error("cannot write the request: {0}")]
    Request(String),
    /// The API server's answer.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// A client that writes as `caller`.
pub struct AsCaller<'a> {
    client: &'a kube::Client,
    caller: &'a Caller,
}

impl<'a> AsCaller<'a> {
    /// Writes with `client`'s connection as `caller`.
    pub fn new(client: &'a kube::Client, caller: &'a Caller) -> Self {
        AsCaller { client, caller }
    }

    /// Creates `object` in its namespace.
    pub async fn create<K>(&self, object: &K) -> Result<K, ActingError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let path = K::url_path(&(), object.namespace().as_deref());
        let body = serde_json::to_vec(object).map_err(|e| ActingError::Request(e.to_string()))?;
        let request = KubeRequest::new(path)
            .create(&PostParams::default(), body)
            .map_err(|e| ActingError::Request(e.to_string()))?;
        self.send(request).await
    }

    /// Patches object `name` of kind `K` in `namespace`.
    pub async fn patch<K, P>(
        &self,
        namespace: &str,
        name: &str,
        patch: &Patch<P>,
    ) -> Result<K, ActingError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
        P: Serialize + std::fmt::Debug,
    {
        let request = KubeRequest::new(K::url_path(&(), Some(namespace)))
            .patch(name, &PatchParams::default(), patch)
            .map_err(|e| ActingError::Request(e.to_string()))?;
        self.send(request).await
    }

    async fn send<K: DeserializeOwned>(&self, request: Request<Vec<u8>>) -> Result<K, ActingError> {
        let request = impersonating(request, self.caller)?;
        Ok(self.client.request(request).await?)
    }
}

/// `request` with the impersonation headers that make it `caller`'s.
pub fn impersonating(
    mut request: Request<Vec<u8>>,
    caller: &Caller,
) -> Result<Request<Vec<u8>>, ActingError> {
    let value = |what: &str, text: &str| {
        HeaderValue::from_str(text).map_err(|_| ActingError::Unsendable {
            user: caller.user.clone(),
            what: what.to_string(),
        })
    };
    let mut headers = vec![(
        HeaderName::from_static("impersonate-user"),
        value("user name", &caller.user)?,
    )];
    if let Some(uid) = caller.uid() {
        headers.push((
            HeaderName::from_static("impersonate-uid"),
            value("uid", uid)?,
        ));
    }
    for group in caller.groups() {
        headers.push((
            HeaderName::from_static("impersonate-group"),
            value("group", group)?,
        ));
    }
    for (key, values) in caller.extra() {
        let name =
            HeaderName::from_bytes(format!("impersonate-extra-{}", escape_key(key)).as_bytes())
                .map_err(|_| ActingError::Unsendable {
                    user: caller.user.clone(),
                    what: format!("extra key {key:?}"),
                })?;
        for v in values {
            headers.push((name.clone(), value(&format!("extra {key:?}"), v)?));
        }
    }
    for (name, value) in headers {
        request.headers_mut().append(name, value);
    }
    Ok(request)
}

/// An extra key as a header name carries it: percent-encoded outside letters, digits and
/// `-`, `.`, `_` (the API server decodes it; `/` in `authentication.kubernetes.io/pod-name`
/// would otherwise end the name).
fn escape_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;
    use std::collections::BTreeMap;

    fn caller(user: &str, extra: &[(&str, &str)]) -> Caller {
        Caller::from(UserInfo {
            username: Some(user.into()),
            uid: Some("u-1".into()),
            groups: Some(vec!["team-a".into(), "system:authenticated".into()]),
            extra: Some(
                extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                    .collect::<BTreeMap<_, _>>(),
            ),
        })
    }

    fn headers(request: &Request<Vec<u8>>, name: &str) -> Vec<String> {
        request
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_part_of_the_identity_goes_as_its_header() {
        let who = caller(
            "system:serviceaccount:team-a:alice",
            &[("authentication.kubernetes.io/pod-name", "p-1")],
        );
        let request = impersonating(Request::new(Vec::new()), &who).unwrap();
        assert_eq!(
            headers(&request, "impersonate-user"),
            ["system:serviceaccount:team-a:alice"]
        );
        assert_eq!(headers(&request, "impersonate-uid"), ["u-1"]);
        assert_eq!(
            headers(&request, "impersonate-group"),
            ["team-a", "system:authenticated"]
        );
        assert_eq!(
            headers(
                &request,
                "impersonate-extra-authentication.kubernetes.io%2Fpod-name"
            ),
            ["p-1"]
        );
        assert_eq!(request.headers().len(), 5, "{:?}", request.headers());
    }

    #[test]
    fn an_identity_no_header_can_carry_is_refused_not_cut() {
        let who = caller("bad\nname", &[]);
        let err = impersonating(Request::new(Vec::new()), &who).unwrap_err();
        assert!(err.to_string().contains("user name"), "{err}");
        let who = caller("alice", &[("scopes", "line\r\nInjected: yes")]);
        let err = impersonating(Request::new(Vec::new()), &who).unwrap_err();
        assert!(err.to_string().contains("extra \"scopes\""), "{err}");
    }
}
