//! Outbound connections made for a project, checked address by address.
//!
//! [`AddressPolicy`] (in `backup-core`) decides which addresses a project may make us dial.
//! This crate makes every client that connects for a project ask it, at the last moment:
//!
//! - [`GuardedResolver`] resolves a name and refuses the whole name when any address it
//!   resolved to is denied. It runs for every new connection, so a name that resolves to an
//!   allowed address when a location is checked and to the metadata service later (DNS
//!   rebinding) is refused the second time too. It serves reqwest (object storage) and
//!   hyper-util (kube, tonic).
//! - [`GuardedConnector`] wraps a hyper-util connector and refuses a URI whose host is a denied
//!   IP literal (those never reach a resolver) or a metadata service's name.
//! - [`redirect_policy`] refuses an HTTP redirect to a denied literal host (the names a redirect
//!   leads to go through the resolver like any other).
//!
//! A refusal is an [`AddressDenied`] inside the client's error chain; [`denied_in`] finds it, so
//! callers can report it as such (which field named the address, what to change) rather than as
//! an unreachable endpoint.

use std::error::Error;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use backup_core::network::{AddressDenied, AddressPolicy};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

/// Resolves names for a project's connections, refusing denied addresses.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver that applies `policy`.
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }

    /// The addresses of `host` (port 0: the caller sets the port), or an error naming the
    /// first denied one. Every address is checked, not only the first: a client tries them in
    /// turn.
    pub async fn resolve(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        self.policy.check_host(host).map_err(denied_error)?;
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        for address in &addresses {
            self.policy
                .check_address(host, address.ip())
                .map_err(denied_error)?;
        }
        Ok(addresses)
    }
}

/// An I/O error carrying the refusal, as connectors report failures.
fn denied_error(denied: AddressDenied) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, denied)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = GuardedResolver::resolve(&resolver, name.as_str()).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = BoxFuture<std::io::Result<Self::Response>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.clone();
        Box::pin(async move { Ok(resolver.resolve(name.as_str()).await?.into_iter()) })
    }
}

/// A hyper-util connector that refuses denied literal hosts before dialling; names are left to
/// the [`GuardedResolver`] inside (see [`guarded_http_connector`]).
#[derive(Clone, Debug)]
pub struct GuardedConnector<C> {
    inner: C,
    policy: Arc<AddressPolicy>,
}

impl<C> GuardedConnector<C> {
    /// Wraps `inner`.
    pub fn new(inner: C, policy: Arc<AddressPolicy>) -> Self {
        Self { inner, policy }
    }
}

impl<C> tower_service::Service<http::Uri> for GuardedConnector<C>
where
    C: tower_service::Service<http::Uri>,
    C::Response: Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn Error + Send + Sync>;
    type Future = BoxFuture<Result<C::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        if let Some(host) = uri.host()
            && let Err(denied) = self.policy.check_host(host)
        {
            return Box::pin(std::future::ready(Err(denied_error(denied).into())));
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// hyper-util's HTTP connector (TCP; TLS goes on top) resolving through a [`GuardedResolver`]
/// and refusing denied literal hosts: what kube and tonic clients connect with for a project.
pub fn guarded_http_connector(
    policy: Arc<AddressPolicy>,
) -> GuardedConnector<HttpConnector<GuardedResolver>> {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(Arc::clone(&policy)));
    // TLS connectors wrap this one and hand it https URIs.
    http.enforce_http(false);
    GuardedConnector::new(http, policy)
}

/// reqwest's redirect policy for a project's requests: at most 10 hops, none to a denied
/// literal host (a name is resolved, and checked, when its connection is made).
pub fn redirect_policy(policy: Arc<AddressPolicy>) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("too many redirects (more than 10)");
        }
        match attempt.url().host_str().map(|h| policy.check_host(h)) {
            Some(Err(denied)) => attempt.error(denied),
            _ => attempt.follow(),
        }
    })
}

/// The refusal inside an error chain, if the error is one. Looks through `std::io::Error`s too,
/// whose `source()` skips the error they wrap.
pub fn denied_in<'e>(error: &'e (dyn Error + 'static)) -> Option<&'e AddressDenied> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(denied) = e.downcast_ref::<AddressDenied>() {
            return Some(denied);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| denied_in(inner))
        {
            return Some(inner);
        }
        current = e.source();
    }
    None
}

/// Whether `address` is a literal IP (`[v6]` brackets allowed), as URL hosts are written.
pub fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_denied() -> Arc<AddressPolicy> {
        Arc::new(AddressPolicy::with_denied(
            AddressPolicy::parse_cidrs("127.0.0.0/8,::1").unwrap(),
        ))
    }

    #[tokio::test]
    async fn a_name_is_refused_by_the_address_it_resolves_to() {
        let resolver = GuardedResolver::new(loopback_denied());
        let err = resolver.resolve("localhost").await.unwrap_err();
        let denied = denied_in(&err).expect("the refusal is in the chain");
        assert_eq!(denied.host, "localhost");
        assert!(denied.address.unwrap().is_loopback(), "{denied}");
        // Allowed when the platform does not deny loopback.
        let open = GuardedResolver::new(Arc::new(AddressPolicy::default()));
        assert!(!open.resolve("localhost").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_denied_literal_is_refused_before_any_connection() {
        use tower_service::Service;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let mut connector = guarded_http_connector(loopback_denied());
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let err = match connector.call(uri).await {
            Ok(_) => panic!("connected to a denied address"),
            Err(err) => err,
        };
        let denied = denied_in(err.as_ref()).expect("the refusal is in the chain");
        assert_eq!(denied.host, "127.0.0.1");
        // Nothing reached the listener.
        assert_eq!(
            listener.accept().unwrap_err().kind(),
            std::io::ErrorKind::WouldBlock
        );
        let metadata: http::Uri = "http://169.254.169.254/latest/meta-data/".parse().unwrap();
        let mut open = guarded_http_connector(Arc::new(AddressPolicy::default()));
        let err = match open.call(metadata).await {
            Ok(_) => panic!("connected to the metadata address"),
            Err(err) => err,
        };
        assert!(denied_in(err.as_ref()).is_some(), "{err}");
    }

    #[tokio::test]
    async fn allowed_hosts_connect() {
        use tower_service::Service;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut connector = guarded_http_connector(Arc::new(AddressPolicy::default()));
        let uri: http::Uri = format!("http://localhost:{port}/").parse().unwrap();
        let (connected, accepted) = tokio::join!(connector.call(uri), listener.accept());
        connected.unwrap();
        accepted.unwrap();
    }

    #[test]
    fn literals() {
        assert!(is_ip_literal("127.0.0.1"));
        assert!(is_ip_literal("[::1]"));
        assert!(!is_ip_literal("example.com"));
    }
}
