//! One keep-alive HTTP/1.1 connection, for load generators.
//!
//! The pooled `reqwest` client does per-request work (URL parsing, pool checkout, proxy matching)
//! that cost the bench more CPU than a node spent serving the request; on a machine shared with the
//! cluster being measured, that CPU comes out of the cluster's share. Each load client owns one of
//! these instead and reconnects after any error.

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than any node's request timeout: a node answers 504 itself before this fires.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Connection {
    /// Connects to the host of `url` (`http://host:port[/...]`, plain HTTP only).
    pub async fn open(url: &str) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("{url}: only plain http:// endpoints are supported by the load clients");
        };
        let authority = rest.split('/').next().unwrap_or(rest).to_string();
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
            .await
            .with_context(|| format!("connecting to {authority}: timed out"))?
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with {authority}"))?;
        // Runs until the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(Self { sender, authority })
    }

    /// Sends one request (a JSON body when given) and reads the whole answer.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let exchange = async {
            self.sender.ready().await?;
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(HOST, &self.authority);
            if json_body.is_some() {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            let request = request.body(Full::new(Bytes::from(json_body.unwrap_or_default())))?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{path} on {}: no answer in time", self.authority))?
    }
}

/// A load client's connection slot: opened on first use, dropped after an error so that the next
/// call starts on a fresh connection.
#[derive(Default)]
pub struct Slot(Option<Connection>);

impl Slot {
    pub async fn call(
        &mut self,
        url: &str,
        method: Method,
        path: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes)> {
        let connection = match &mut self.0 {
            Some(connection) => connection,
            empty => empty.insert(Connection::open(url).await?),
        };
        let result = connection.call(method, path, json_body).await;
        if result.is_err() {
            self.0 = None;
        }
        result
    }
}
