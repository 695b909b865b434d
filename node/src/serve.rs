//! The HTTP server's accept loop: hyper serving the warp routes, with the bounds warp's own server
//! lacks. At most `max_connections` connections are served at once (one more is answered `503` and
//! closed); a request's headers must arrive within `read_timeout` of the connection being ready for
//! them, which also closes connections left idle that long (slowloris and forgotten keep-alives alike).

use crate::server::Limits;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use warp::reply::Response;
use warp::Filter;

/// Connections over the cap being answered `503` at once; beyond this they are closed unanswered, so
/// that a flood costs neither tasks nor file descriptors.
const MAX_REFUSING: usize = 64;
/// How long an over-the-cap connection gets to take its `503`.
const REFUSE_WAIT: Duration = Duration::from_millis(500);
/// How long to pause accepting after an error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Least time between two log lines about refused or failed connections.
const LOG_EVERY: Duration = Duration::from_secs(10);

const OVER_CAPACITY: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/json\r\n",
    "connection: close\r\n",
    "retry-after: 1\r\n",
    "content-length: 87\r\n\r\n",
    r#"{"error":"too_many_connections","message":"the node serves its maximum of connections"}"#,
);

/// Serves `filter` on `listener` until `shutdown` completes, then stops accepting and waits for the
/// connections in progress to finish (the caller bounds that wait).
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let refused = Throttle::default();
    let accept_failed = Throttle::default();
    let graceful = GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Most likely out of file descriptors: give connections a moment to close.
                if let Some(failures) = accept_failed.due() {
                    tracing::error!(
                        %error,
                        failures,
                        "cannot accept connections (is --max-connections above the open file limit?)"
                    );
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(refused) = refused.due() {
                tracing::warn!(
                    refused,
                    max_connections = limits.max_connections,
                    "connection limit reached: refusing new connections (--max-connections)"
                );
            }
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Timeouts and resets are the client's doing: not worth more than a debug line.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers a connection over the cap with a `503` JSON body and closes it.
async fn refuse(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(OVER_CAPACITY.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent before closing: closing with unread data resets the connection,
        // which can destroy the answer before the client reads it.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSE_WAIT, answer).await;
}

fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Counts repeated occurrences of something worth a log line, and says when one is due: the first
/// time, then at most every `LOG_EVERY`, with the count since the last line.
#[derive(Default)]
struct Throttle {
    since_last: AtomicU64,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Throttle {
    fn due(&self) -> Option<u64> {
        let count = self.since_last.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return None;
        }
        *last = Some(Instant::now());
        self.since_last.store(0, Ordering::Relaxed);
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_log_line_is_due_first_then_not_again_at_once() {
        let throttle = Throttle::default();
        assert_eq!(throttle.due(), Some(1));
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.due(), None);
        *throttle.last.lock().unwrap() = Some(Instant::now() - LOG_EVERY);
        assert_eq!(throttle.due(), Some(3));
    }

    #[test]
    fn the_over_capacity_answer_is_well_formed_json() {
        let (head, body) = OVER_CAPACITY.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let error: flotilla_shared::api::ErrorBody = serde_json::from_str(body).unwrap();
        assert_eq!(error.error, "too_many_connections");
    }
}
