//! Who asks, and whether they may: one SubjectAccessReview for the dashboard's callers and the
//! admission webhook's requesting users alike, so the project's own RBAC decides both.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use backup_api::GROUP;

/// A user as the API server knows them (from a TokenReview or an AdmissionReview).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user name.
    pub user: String,
    uid: Option<String>,
    groups: Vec<String>,
    extra: BTreeMap<String, Vec<String>>,
}

impl From<UserInfo> for Caller {
    fn from(user: UserInfo) -> Self {
        Caller {
            user: user.username.unwrap_or_default(),
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }
    }
}

impl Caller {
    /// The user's uid, when their authenticator gives one.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The user's groups.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The authenticator's extra attributes of the user.
    pub fn extra(&self) -> &BTreeMap<String, Vec<String>> {
        &self.extra
    }
}

/// One action on one of our resources, as RBAC names it.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// `get`, `list`, `delete`, `patch`, `create`, or our own `backup`, `restore`,
    /// `restore-privileged`.
    pub verb: &'a str,
    /// `clusterbackups`, `managedclusters`, ...
    pub resource: &'a str,
    /// `download` for `clusterbackups/download`.
    pub subresource: Option<&'a str>,
    /// The object's name, when the action is on one.
    pub name: Option<&'a str>,
}

impl<'a> Action<'a> {
    /// `verb` on `resource`.
    pub fn on(verb: &'a str, resource: &'a str) -> Self {
        Action {
            verb,
            resource,
            subresource: None,
            name: None,
        }
    }

    /// The same action on object `name`.
    pub fn named(self, name: &'a str) -> Self {
        Action {
            name: Some(name),
            ..self
        }
    }

    /// The same action on a subresource.
    pub fn subresource(self, subresource: &'a str) -> Self {
        Action {
            subresource: Some(subresource),
            ..self
        }
    }
}

/// The SubjectAccessReview asking whether `caller` may do `action` in `namespace`.
pub fn review_of(caller: &Caller, namespace: &str, action: Action<'_>) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(caller.user.clone()),
            uid: caller.uid.clone(),
            groups: Some(caller.groups.clone()),
            extra: Some(caller.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(GROUP.into()),
                resource: Some(action.resource.into()),
                subresource: action.subresource.map(str::to_string),
                verb: Some(action.verb.into()),
                namespace: Some(namespace.into()),
                name: action.name.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// Asks the API server `review`'s question: whether it is allowed.
pub async fn ask(client: &kube::Client, review: &SubjectAccessReview) -> kube::Result<bool> {
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
