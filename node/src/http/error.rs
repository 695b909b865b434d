//! Every error answer the API gives: a status, a code and words, sent as JSON `{"error","message"}`.
//! The constructors below are the status/code table the README's API section cites.

use crate::storage::StorageError;
use crate::validation::Rejected;
use flotilla_shared::api::ErrorBody;
use serde::Serialize;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Reply;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `400 bad_request`: a body that cannot be read or parsed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// `400 bad_query`: a query string naming an unknown parameter or a bad value.
    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", message)
    }

    /// `400 bad_peer`: an admin request naming a node that is not a peer.
    pub fn bad_peer(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_peer", message)
    }

    /// `404 unknown_peer`: an admin path naming a node that is not a peer.
    pub fn unknown_peer(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown_peer", message)
    }

    /// `400 bad_fault`: a link or disk fault the node cannot apply.
    pub fn bad_fault(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_fault", message)
    }

    /// `400 bad_timing`: timing the node cannot run with.
    pub fn bad_timing(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_timing", message)
    }

    /// `400` for a Raft message or submit wrong in itself, `409` for one wrong for this node's state;
    /// the code is the rejection's reason.
    pub fn rejected(rejected: &Rejected) -> Self {
        let status = if rejected.reason.is_malformed() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::CONFLICT
        };
        Self::new(status, rejected.reason.code(), rejected.detail.as_str())
    }

    /// `401 unauthorized`: a token is needed and none (or no usable one) was given.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// `403 forbidden`: the token given is wrong.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// `403 admin_disabled`: the node was started without `--admin-token`.
    pub fn admin_disabled() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is disabled: start the node with --admin-token",
        )
    }

    /// `403 cross_origin`: the request came from a web page.
    pub fn cross_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from web pages are refused: this node serves only its own clients and peers",
        )
    }

    /// `404 not_found`.
    pub fn not_found(method: &Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
        )
    }

    /// `405 method_not_allowed`.
    pub fn method_not_allowed(method: &Method, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not supported on {path}"),
        )
    }

    /// `408 request_timeout`: the body did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }

    /// `409 not_leader`.
    pub fn not_leader(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "not_leader", message)
    }

    /// `413 payload_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is over the limit of {limit} bytes"),
        )
    }

    /// `500 storage_error`.
    pub fn storage(failure: &StorageError) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            failure.to_string(),
        )
    }

    /// `500 internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// `503 shutting_down`: only for requests that certainly did not reach the log.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the node is stopping",
        )
    }

    /// `503 no_leader`: certainly not appended.
    pub fn no_leader(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
    }

    /// `503 overloaded`: certainly not appended.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
    }

    /// `503 partitioned`: a Raft message from a peer this node isolates itself from.
    pub fn partitioned(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "partitioned", message)
    }

    /// `503 too_many_streams`.
    pub fn too_many_streams(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "too_many_streams", message)
    }

    /// `504 timeout`: the outcome is unknown.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
    }
}

/// Error codes a node answers only for a request it certainly did not append (contract: `503` means
/// not appended). Any other answer is passed on, never retried: its write may be in the log.
pub const NOT_APPENDED_CODES: [&str; 2] = ["no_leader", "shutting_down"];

impl Reply for ApiError {
    fn into_response(self) -> Response {
        json(
            self.status,
            &ErrorBody {
                error: self.code.into(),
                message: self.message,
            },
        )
    }
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}
