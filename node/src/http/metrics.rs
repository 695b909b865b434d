//! `/metrics`: Prometheus text rendered from the metrics and the current status.

use super::Api;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Reply;

pub(super) fn metrics(api: &Api) -> Response {
    let status = api.status.borrow().clone();
    let mut response = api.metrics.render(&status).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
