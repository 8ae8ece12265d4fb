//! The validating admission webhook: who may do what.
//!
//! The controller acts with its own rights in every cluster of a project, so whoever may create
//! a ClusterRestore would be cluster-admin of them all. Before the API server stores one of our
//! kinds, it asks this webhook, and the webhook asks the API server (a SubjectAccessReview)
//! whether the *requesting user* — the AdmissionReview's `userInfo`, never the controller —
//! holds our verbs on each ManagedCluster the object acts on ([`needed`]). A refusal names the
//! verb, the resource and the cluster, as Kubernetes' RBAC errors do. An update that leaves the
//! spec as it was (status, finalizers, labels) asks for nothing new and is admitted.
//!
//! Every replica serves it (`--webhook-addr`), over TLS ([`tls`]).

pub mod needed;
pub mod register;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use self::needed::Needed;
use crate::access::{self, Caller};

/// What the webhook's handler works with.
#[derive(Clone)]
pub struct Webhook {
    /// The management cluster, for SubjectAccessReviews.
    pub client: kube::Client,
}

/// The webhook's routes: `POST /validate`.
pub fn router(webhook: Webhook) -> axum::Router {
    axum::Router::new()
        .route(register::PATH, post(review))
        .with_state(webhook)
}

async fn review(
    State(webhook): State<Webhook>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => {
            return Json(
                AdmissionResponse::invalid(format!("not an AdmissionReview request: {e}"))
                    .into_review(),
            );
        }
    };
    Json(judge(&webhook.client, &request).await.into_review())
}

/// The answer to one admission request.
#[tracing::instrument(name = "admission", skip_all, fields(kind = %request.kind.kind, namespace = request.namespace.as_deref().unwrap_or_default(), name = %request.name, user = request.user_info.username.as_deref().unwrap_or_default()))]
pub async fn judge(
    client: &kube::Client,
    request: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let Some(spec) = changed_spec(request) else {
        return allowed;
    };
    let needed = match needed::needed(&request.kind.kind, spec) {
        Ok(needed) => needed,
        Err(unreadable) => return allowed.deny(unreadable),
    };
    let namespace = request.namespace.clone().unwrap_or_default();
    let caller = Caller::from(request.user_info.clone());
    match first_refused(client, &caller, &namespace, &needed).await {
        Ok(None) => allowed,
        Ok(Some(refused)) => {
            let refusal = refused.refusal(&caller.user, &namespace);
            tracing::info!(%refusal, "refused at admission");
            allowed.deny(refusal)
        }
        Err(e) => allowed.deny(format!(
            "the permission check could not be made ({e}); nothing was admitted, try again"
        )),
    }
}

/// The spec to judge: on create, the object's; on update, the new one only when it differs
/// from the old. `None` when there is nothing to judge.
fn changed_spec(request: &AdmissionRequest<DynamicObject>) -> Option<&serde_json::Value> {
    fn spec(object: &DynamicObject) -> Option<&serde_json::Value> {
        object.data.get("spec")
    }
    let new = request.object.as_ref().map(spec)?;
    match request.operation {
        Operation::Create => Some(new.unwrap_or(&serde_json::Value::Null)),
        Operation::Update => {
            let old = request.old_object.as_ref().and_then(spec);
            (new != old).then(|| new.unwrap_or(&serde_json::Value::Null))
        }
        Operation::Delete | Operation::Connect => None,
    }
}

/// The first of `needed` that `caller` does not hold in `namespace`, asked one by one in order
/// (a restore's plain verb before its privileged one, so the refusal names the first missing).
async fn first_refused<'a>(
    client: &kube::Client,
    caller: &Caller,
    namespace: &str,
    needed: &'a [Needed],
) -> kube::Result<Option<&'a Needed>> {
    for need in needed {
        let review = access::review_of(caller, namespace, need.action());
        if !access::ask(client, &review).await? {
            return Ok(Some(need));
        }
    }
    Ok(None)
}
