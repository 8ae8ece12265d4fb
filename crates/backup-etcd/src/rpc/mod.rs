//! etcd's v3 gRPC API: the messages and clients generated from `proto/etcd_v3.proto` (only the
//! calls we make), and the one way this crate opens a channel to a member.
//!
//! The generated file is committed so that building needs nothing but Rust (no `protoc`);
//! `cargo xtask proto` regenerates it and `cargo xtask proto --check` keeps it honest.

#[allow(missing_docs, clippy::all, clippy::pedantic)]
#[rustfmt::skip] // prettyplease formats it; `cargo xtask proto --check` owns its exact text.
mod etcdserverpb;

use std::sync::Arc;
use std::time::Duration;

use backup_net::AddressPolicy;

pub use etcdserverpb::kv_client::KvClient;
pub use etcdserverpb::maintenance_client::MaintenanceClient;
pub use etcdserverpb::{
    KeyValue, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse, TxnRequest, TxnResponse, request_op,
};
use tonic::transport::Endpoint;
pub use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Opens a gRPC channel to one member at `url` (`http://` or `https://host:port`), with TLS
/// when `tls` is given, every address dialled checked against `addresses` when given (see
/// [`backup_net`]). The connection is made now, so a refused or failed handshake shows here
/// and not on the first call.
pub async fn connect(
    url: &str,
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
    addresses: Option<Arc<AddressPolicy>>,
) -> Result<Channel, tonic::transport::Error> {
    let mut endpoint = Endpoint::from_shared(url.to_string())?.connect_timeout(connect_timeout);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    match addresses {
        Some(policy) => {
            endpoint
                .connect_with_connector(backup_net::guarded_http_connector(policy))
                .await
        }
        None => endpoint.connect().await,
    }
}
