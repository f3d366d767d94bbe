//! The ledger routes: `GET /api/ledger[/{bucket}[/{key}]]`, `GET
//! /api/writers/{bucket}`, `PUT
//! /api/ledger/{bucket}/{key}[/{value}]`, `DELETE
//! /api/ledger/{bucket}[/{key}]`.
//!
//! Names come percent-decoded from the path (`owner%2Finfo` is the bucket
//! `owner/info`); a value comes from the path or the raw body (at most
//! [`MAX_VALUE_LEN`] bytes, else 413). The checks here give the limits in
//! the error before anything reaches the driver; the node still checks
//! everything (the owner-only rule: 403). Writes are signed by this node
//! and carry no ttl. Tombstones and expired entries are never shown.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kairos_core::ledger::{LedgerError, MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_VALUE_LEN};
use serde_json::{json, Value};

use super::{ask, ApiError, Commands};
use crate::agent::driver::Command;
use crate::agent::status::{show_value, BucketView, LedgerView, WritersView};

type Reply<T> = Result<Json<T>, ApiError>;

fn bad_path(r: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", r.body_text()))
}

fn check_bucket(bucket: &str) -> Result<(), ApiError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_LEN {
        return Err(LedgerError::BucketLength.into());
    }
    Ok(())
}

fn check_key(bucket: &str, key: &str) -> Result<(), ApiError> {
    check_bucket(bucket)?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LedgerError::KeyLength.into());
    }
    Ok(())
}

pub(super) async fn all(State(c): State<Commands>) -> Reply<LedgerView> {
    ask(&c, |reply| Command::Ledger { bucket: None, reply }).await.map(Json)
}

pub(super) async fn bucket(State(c): State<Commands>, path: Result<Path<String>, PathRejection>) -> Reply<BucketView> {
    let Path(bucket) = path.map_err(bad_path)?;
    check_bucket(&bucket)?;
    super::reads::bucket_of(&c, &bucket).await
}

pub(super) async fn get_key(
    State(c): State<Commands>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Reply<String> {
    let Path((bucket, key)) = path.map_err(bad_path)?;
    check_key(&bucket, &key)?;
    let (b, k) = (bucket.as_bytes().to_vec(), key.as_bytes().to_vec());
    match ask(&c, |reply| Command::LedgerGet {
        bucket: b,
        key: k,
        reply,
    })
    .await?
    {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::not_found(format!("no key {key} in bucket {bucket}"))),
    }
}

/// `GET /api/writers/{bucket}`: who wrote each live entry, and whether
/// that is the master of the `network_id` the bucket is named after.
pub(super) async fn writers(
    State(c): State<Commands>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<WritersView> {
    let Path(bucket) = path.map_err(bad_path)?;
    check_bucket(&bucket)?;
    let bucket = bucket.into_bytes();
    ask(&c, |reply| Command::Writers { bucket, reply }).await.map(Json)
}

async fn write(c: &Commands, bucket: String, key: String, value: Vec<u8>) -> Reply<Value> {
    check_key(&bucket, &key)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(LedgerError::ValueTooLong.into());
    }
    let shown = show_value(bucket.as_bytes(), &value);
    let (b, k) = (bucket.as_bytes().to_vec(), key.as_bytes().to_vec());
    ask(c, |reply| Command::LedgerPut {
        bucket: b,
        key: k,
        value,
        reply,
    })
    .await?
    .map_err(|e| refused(e, &bucket))?;
    Ok(Json(json!({ "bucket": bucket, "key": key, "value": shown })))
}

/// The node's refusal, naming the bucket when it is owner-only.
fn refused(e: LedgerError, bucket: &str) -> ApiError {
    let mut err = ApiError::from(e);
    if e == LedgerError::NotOwner {
        err.message =
            format!("bucket {bucket} is owner-only: this node may only write or delete the key that is its node id");
    }
    err
}

pub(super) async fn put_path(
    State(c): State<Commands>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Reply<Value> {
    let Path((bucket, key, value)) = path.map_err(bad_path)?;
    write(&c, bucket, key, value.into_bytes()).await
}

pub(super) async fn put_body(
    State(c): State<Commands>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Value> {
    let Path((bucket, key)) = path.map_err(bad_path)?;
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_VALUE_LEN} bytes (the ledger's value limit)"),
        ),
        status => ApiError::new(status, format!("cannot read the body: {}", r.body_text())),
    })?;
    write(&c, bucket, key, body.to_vec()).await
}

pub(super) async fn delete_key(
    State(c): State<Commands>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Reply<Value> {
    let Path((bucket, key)) = path.map_err(bad_path)?;
    check_key(&bucket, &key)?;
    let (b, k) = (bucket.as_bytes().to_vec(), key.as_bytes().to_vec());
    match ask(&c, |reply| Command::LedgerDelete {
        bucket: b,
        key: k,
        reply,
    })
    .await?
    {
        Ok(true) => Ok(Json(json!({ "deleted": 1 }))),
        Ok(false) => Err(ApiError::not_found(format!("no key {key} in bucket {bucket}"))),
        Err(e) => Err(refused(e, &bucket)),
    }
}

pub(super) async fn delete_bucket(
    State(c): State<Commands>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<Value> {
    let Path(bucket) = path.map_err(bad_path)?;
    check_bucket(&bucket)?;
    let b = bucket.as_bytes().to_vec();
    let n = ask(&c, |reply| Command::LedgerDeleteBucket { bucket: b, reply })
        .await?
        .map_err(|e| refused(e, &bucket))?;
    Ok(Json(json!({ "deleted": n })))
}
