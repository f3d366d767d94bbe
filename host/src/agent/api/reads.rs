//! Read routes about the node, the members and EdgeVPN's buckets:
//! `/api/summary`, `/api/machines`, `/api/nodes`, `/api/peers`,
//! `/api/peerstore`, `/api/users`, `/api/services`, `/api/dns`,
//! `/api/files`, `/api/blockchain`. Each is one command to the driver.

use axum::extract::State;
use axum::Json;
use kairos_core::ledger::buckets::{DNS, FILES, SERVICES, USERS};

use super::{ask, ApiError, Commands};
use crate::agent::driver::Command;
use crate::agent::status::{Blockchain, BucketView, Machine, NodeEntry, Peer, PeerstoreEntry, Summary};

type Reply<T> = Result<Json<T>, ApiError>;

pub(super) async fn summary(State(c): State<Commands>) -> Reply<Summary> {
    ask(&c, Command::Summary).await.map(Json)
}

pub(super) async fn machines(State(c): State<Commands>) -> Reply<Vec<Machine>> {
    ask(&c, Command::Machines).await.map(Json)
}

pub(super) async fn nodes(State(c): State<Commands>) -> Reply<Vec<NodeEntry>> {
    ask(&c, Command::Nodes).await.map(Json)
}

pub(super) async fn peers(State(c): State<Commands>) -> Reply<Vec<Peer>> {
    ask(&c, Command::Peers).await.map(Json)
}

pub(super) async fn peerstore(State(c): State<Commands>) -> Reply<Vec<PeerstoreEntry>> {
    ask(&c, Command::Peerstore).await.map(Json)
}

pub(super) async fn blockchain(State(c): State<Commands>) -> Reply<Blockchain> {
    ask(&c, Command::Blockchain).await.map(Json)
}

/// One bucket as `{"key": "value"}` (`{}` when empty).
pub(super) async fn bucket_of(c: &Commands, bucket: &str) -> Reply<BucketView> {
    let bucket = bucket.as_bytes().to_vec();
    let mut view = ask(c, |reply| Command::Ledger {
        bucket: Some(bucket),
        reply,
    })
    .await?;
    Ok(Json(view.pop_first().map(|(_, b)| b).unwrap_or_default()))
}

pub(super) async fn users(State(c): State<Commands>) -> Reply<BucketView> {
    bucket_of(&c, USERS).await
}

pub(super) async fn services(State(c): State<Commands>) -> Reply<BucketView> {
    bucket_of(&c, SERVICES).await
}

pub(super) async fn dns(State(c): State<Commands>) -> Reply<BucketView> {
    bucket_of(&c, DNS).await
}

pub(super) async fn files(State(c): State<Commands>) -> Reply<BucketView> {
    bucket_of(&c, FILES).await
}
