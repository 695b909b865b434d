//! Keep-alive HTTP/1.1 connections between nodes: peer RPCs and client requests forwarded to the
//! leader.
//!
//! A pooled `reqwest` client does per-request work (URL parsing, pool checkout, proxy matching) that
//! cost more CPU than the receiving node spent serving the request. A [`Pool`] keeps plain hyper
//! connections to one host: each request takes an idle one or opens a new one, and gives it back only
//! after a clean exchange, so a broken connection is never reused.

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One connection to one host.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    idle_since: Instant,
}

impl Connection {
    /// Connects; the caller's timeout bounds how long that may take.
    async fn open(authority: &str) -> Result<Self> {
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {authority}"))?;
        // Runs until the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(Self {
            sender,
            idle_since: Instant::now(),
        })
    }
}

/// One call: method, path (with query), extra headers and an optional JSON body.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub headers: &'a [(HeaderName, &'a str)],
    pub json_body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// A whole answer: status, headers and body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a request got no answer, split by whether the other side may have acted on it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Nothing was sent: connecting failed, or no connection could take the request in time.
    #[error("not sent: {0:#}")]
    NotSent(anyhow::Error),
    /// The request was (perhaps partly) sent, but the connection failed before a whole answer.
    #[error("no answer: {0:#}")]
    Lost(anyhow::Error),
    /// No whole answer within the timeout; the request may or may not have been sent.
    #[error("{authority}: no answer within {timeout:?}")]
    TimedOut {
        authority: String,
        timeout: Duration,
    },
}

/// Idle connections to one host, reused across requests.
pub struct Pool {
    authority: String,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// The `host:port` of `http://host:port[/path]` (plain HTTP only).
pub fn authority_of(url: &str) -> Result<&str> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only plain http:// URLs are supported");
    };
    Ok(rest.split('/').next().unwrap_or(rest))
}

impl Pool {
    /// Connections to `authority` (`host:port`), keeping at most `max_idle` open between requests.
    pub fn new(authority: impl Into<String>, max_idle: usize) -> Self {
        Self {
            authority: authority.into(),
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// Lets go of connections idle for longer than `idle_timeout`. Set it below the other side's
    /// keep-alive limit: a request written just as the server closes an idle connection has an
    /// unknown fate.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends one request with a JSON body and reads the whole answer; `call.timeout` bounds
    /// connecting too.
    pub async fn call(&self, call: Call<'_>) -> Result<(StatusCode, Bytes)> {
        let mut headers = Vec::with_capacity(call.headers.len() + 1);
        for (name, value) in call.headers {
            headers.push((name.clone(), HeaderValue::from_str(value)?));
        }
        if call.json_body.is_some() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        let body = call.json_body.map(Bytes::from);
        let answer = self
            .send(call.method, call.path, &headers, body, call.timeout)
            .await?;
        Ok((answer.status, answer.body))
    }

    /// Sends one request and reads the whole answer within `timeout` (connecting included). A
    /// request an idle connection could not take (the server had just closed it) is sent again on
    /// a fresh connection, since it was never written.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| SendError::NotSent(e.into()))?;
        let attempt = self.exchange(request);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(answer) => answer,
            Err(_) => Err(SendError::TimedOut {
                authority: self.authority.clone(),
                timeout,
            }),
        }
    }

    async fn exchange(&self, mut request: Request<Full<Bytes>>) -> Result<Answer, SendError> {
        loop {
            let (mut connection, fresh) =
                self.ready_connection().await.map_err(SendError::NotSent)?;
            let response = match connection.sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut error) => match error.take_message() {
                    Some(unsent) if !fresh => {
                        request = unsent;
                        continue;
                    }
                    Some(_) => return Err(SendError::NotSent(error.into_error().into())),
                    None => return Err(SendError::Lost(error.into_error().into())),
                },
            };
            let status = response.status();
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| SendError::Lost(e.into()))?
                .to_bytes();
            connection.idle_since = Instant::now();
            let mut idle = self.lock();
            if idle.len() < self.max_idle {
                idle.push(connection);
            }
            return Ok(Answer {
                status,
                headers: parts.headers,
                body,
            });
        }
    }

    /// An idle connection that can take a request (`false`), else a new one (`true`). An idle
    /// connection the other side has closed (its keep-alive ended), or one idle for too long, is
    /// discarded, not reported as a failure: nothing was sent on it.
    async fn ready_connection(&self) -> Result<(Connection, bool)> {
        loop {
            let Some(mut connection) = self.lock().pop() else {
                break;
            };
            if connection.idle_since.elapsed() < self.idle_timeout
                && !connection.sender.is_closed()
                && connection.sender.ready().await.is_ok()
            {
                return Ok((connection, false));
            }
        }
        let mut connection = Connection::open(&self.authority).await?;
        connection.sender.ready().await?;
        Ok((connection, true))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Pool`] per host, made on first use: for requests to whichever node leads now.
pub struct Pools {
    by_authority: Mutex<HashMap<String, Arc<Pool>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// Hosts remembered at most; past it the map starts over (addresses change only with membership).
const MAX_POOLS: usize = 64;

impl Pools {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            by_authority: Mutex::new(HashMap::new()),
            max_idle,
            idle_timeout,
        }
    }

    pub fn get(&self, authority: &str) -> Arc<Pool> {
        let mut pools = self
            .by_authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(authority) {
            return pool.clone();
        }
        if pools.len() >= MAX_POOLS {
            pools.clear();
        }
        let pool =
            Arc::new(Pool::new(authority, self.max_idle).with_idle_timeout(self.idle_timeout));
        pools.insert(authority.to_string(), pool.clone());
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// A tiny HTTP server on 127.0.0.1: answers every request on a connection with `200 ok`, and
    /// closes a connection after `per_connection` answers. Counts accepted connections.
    async fn server(per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    for _ in 0..per_connection {
                        let Ok(n) = socket.read(&mut buffer).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    fn get(path: &str) -> Call<'_> {
        Call {
            method: Method::GET,
            path,
            headers: &[],
            json_body: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn reuses_one_connection_for_sequential_calls() {
        let (authority, accepted) = server(usize::MAX).await;
        let pool = Pool::new(authority, 1);
        for _ in 0..5 {
            let (status, body) = pool.call(get("/x")).await.unwrap();
            assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_closed_by_the_server_is_replaced() {
        let (authority, accepted) = server(1).await;
        let pool = Pool::new(authority, 1);
        pool.call(get("/a")).await.unwrap();
        // Let the server's close reach the idle connection, as an ended keep-alive would.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, _) = pool.call(get("/b")).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_host_fails_within_the_timeout() {
        // A bound but never-accepting port would still complete the TCP handshake; a closed one
        // refuses at once, so bind and drop to find one.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = closed.local_addr().unwrap().to_string();
        drop(closed);
        let pool = Pool::new(authority, 1);
        let error = pool.call(get("/")).await.unwrap_err();
        assert!(format!("{error:#}").contains("connecting"), "{error:#}");
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_idle_timeout_is_not_reused() {
        let (authority, accepted) = server(usize::MAX).await;
        let pool = Pool::new(authority, 1).with_idle_timeout(Duration::from_millis(50));
        pool.call(get("/a")).await.unwrap();
        pool.call(get("/b")).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused while fresh");
        tokio::time::sleep(Duration::from_millis(120)).await;
        pool.call(get("/c")).await.unwrap();
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "reused after the idle timeout"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_a_silent_server_is_lost() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = closed.local_addr().unwrap().to_string();
        drop(closed);
        let send = |pool: Pool| async move {
            pool.send(
                Method::POST,
                "/x",
                &[],
                Some(Bytes::from_static(b"{}")),
                Duration::from_millis(300),
            )
            .await
        };
        assert!(matches!(
            send(Pool::new(refused, 1)).await,
            Err(SendError::NotSent(_))
        ));

        // Accepts, reads the request, never answers: the request may have been acted on.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        assert!(matches!(
            send(Pool::new(silent, 1)).await,
            Err(SendError::TimedOut { .. })
        ));
    }

    #[tokio::test]
    async fn send_returns_the_answers_headers_and_passes_its_own() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let seen = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0u8; 4096];
            let n = socket.read(&mut buffer).await.unwrap();
            let reply = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\nx-raft-leader: 3 http://h:1\r\ncontent-length: 2\r\n\r\n{}";
            socket.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buffer[..n]).to_lowercase()
        });
        let pool = Pool::new(authority, 1);
        let headers = [(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer t"),
        )];
        let answer = pool
            .send(
                Method::POST,
                "/v1/messages?x=1",
                &headers,
                Some(Bytes::from_static(b"{\"text\":\"a\"}")),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(answer.headers["x-raft-leader"], "3 http://h:1");
        assert_eq!(&answer.body[..], b"{}");
        let request = seen.await.unwrap();
        assert!(
            request.starts_with("post /v1/messages?x=1 http/1.1"),
            "{request}"
        );
        assert!(request.contains("authorization: bearer t"), "{request}");
        assert!(request.ends_with("{\"text\":\"a\"}"), "{request}");
    }

    #[test]
    fn authority_is_the_host_part_of_plain_http_urls() {
        assert_eq!(
            authority_of("http://127.0.0.1:7001/v1").unwrap(),
            "127.0.0.1:7001"
        );
        assert_eq!(authority_of("http://h:1").unwrap(), "h:1");
        assert!(authority_of("https://h:1").is_err());
    }
}
