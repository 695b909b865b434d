//! Keep-alive HTTP/1.1 connections for the hot request path between nodes (peer RPCs).
//!
//! A pooled `reqwest` client does per-request work (URL parsing, pool checkout, proxy matching) that
//! cost more CPU than the receiving node spent serving the request. A [`Pool`] keeps plain hyper
//! connections to one host: each request takes an idle one or opens a new one, and gives it back only
//! after a clean exchange, so a broken connection is never reused.

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;

/// One connection to one host.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
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
        Ok(Self { sender })
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

/// Idle connections to one host, reused across requests.
pub struct Pool {
    authority: String,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
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
        }
    }

    /// Sends one request and reads the whole answer; `call.timeout` bounds connecting too.
    pub async fn call(&self, call: Call<'_>) -> Result<(StatusCode, Bytes)> {
        let timeout = call.timeout;
        let attempt = async {
            let mut connection = self.ready_connection().await?;
            let answer = self.exchange(&mut connection, call).await?;
            anyhow::Ok((connection, answer))
        };
        let (connection, answer) = tokio::time::timeout(timeout, attempt)
            .await
            .with_context(|| format!("{}: no answer within {timeout:?}", self.authority))??;
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(connection);
        }
        Ok(answer)
    }

    /// An idle connection that can take a request, else a new one. An idle connection the other side
    /// has closed (its keep-alive ended) is discarded, not reported as a failure: nothing was sent on it.
    async fn ready_connection(&self) -> Result<Connection> {
        loop {
            let Some(mut connection) = self.lock().pop() else {
                break;
            };
            if !connection.sender.is_closed() && connection.sender.ready().await.is_ok() {
                return Ok(connection);
            }
        }
        let mut connection = Connection::open(&self.authority).await?;
        connection.sender.ready().await?;
        Ok(connection)
    }

    async fn exchange(
        &self,
        connection: &mut Connection,
        call: Call<'_>,
    ) -> Result<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(HOST, &self.authority);
        for (name, value) in call.headers {
            request = request.header(name, *value);
        }
        if call.json_body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(call.json_body.unwrap_or_default())))?;
        let response = connection.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
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
