//! One keep-alive HTTP/1.1 connection, driven by the task that uses it: `flotilla-bench`'s load clients.
//! Bench-only: the node and the tests speak HTTP through their own clients (hyper, reqwest).
//!
//! The benchmark's clients share two cores with the cluster they measure, so every microsecond a client
//! spends per request is taken from the nodes. hyper's client runs each connection as a task of its own
//! (a hand-off and a wake-up per request) and builds a header map per request; here the request is
//! written from a reused buffer in one `write` and the answer parsed in place with `httparse`. Answers
//! must carry a `Content-Length` or be chunked (both seen from warp and etcd's gateway).

use anyhow::{bail, Context as _, Result};
use reqwest::Url;
use std::io::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Most header lines an answer may have.
const MAX_HEADERS: usize = 32;
/// An answer's head larger than this is refused rather than buffered without end.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Likewise a whole answer (a page of 1,000 messages is ~200 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Parses a plain `http://` URL: the load clients speak nothing else.
fn parse_http(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).with_context(|| format!("{url}: not a URL"))?;
    if parsed.scheme() != "http" {
        bail!("{url}: only plain http:// URLs are supported");
    }
    Ok(parsed)
}

/// The `host:port` of `http://host:port[/path]`.
pub fn authority_of(url: &str) -> Result<String> {
    let parsed = parse_http(url)?;
    let host = parsed
        .host_str()
        .with_context(|| format!("{url}: no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    Ok(format!("{host}:{port}"))
}

/// The `host:port` of each URL: load clients connect to it directly.
pub fn authorities(urls: &[String]) -> Result<Vec<String>> {
    urls.iter().map(|url| authority_of(url)).collect()
}

/// The path and query of `http://host:port/path?query`.
pub fn url_path(url: &str) -> Result<String> {
    let parsed = parse_http(url)?;
    Ok(match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_string(),
    })
}

/// A connection to `authority` (`host:port`), opened on first use and again after any failure.
pub struct Http1Connection {
    authority: String,
    stream: Option<TcpStream>,
    request: Vec<u8>,
    received: Vec<u8>,
    body: Vec<u8>,
}

/// Where an answer's body is, once its head is parsed.
enum Framing {
    Length { head: usize, length: usize },
    Chunked { head: usize },
}

impl Http1Connection {
    pub fn new(authority: impl Into<String>) -> Self {
        Self {
            authority: authority.into(),
            stream: None,
            request: Vec::with_capacity(512),
            received: Vec::with_capacity(4096),
            body: Vec::new(),
        }
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// Sends one request (`path` with its query; a JSON body if given) and returns the status and the
    /// body. `timeout` bounds connecting too. After any error the connection is dropped, so the next
    /// call starts on a fresh one and never reads a previous request's late answer.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        json_body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<(u16, &[u8])> {
        let outcome = tokio::time::timeout(timeout, self.exchange(method, path, json_body)).await;
        let status = match outcome {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => {
                self.stream = None;
                return Err(error.context(format!("{method} {}{path}", self.authority)));
            }
            Err(_) => {
                self.stream = None;
                bail!(
                    "{method} {}{path}: no answer within {timeout:?}",
                    self.authority
                );
            }
        };
        Ok((status, &self.body))
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        json_body: Option<&[u8]>,
    ) -> Result<u16> {
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\n",
            self.authority
        )?;
        if let Some(body) = json_body {
            write!(
                self.request,
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )?;
            self.request.extend_from_slice(body);
        } else {
            self.request.extend_from_slice(b"\r\n");
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(&self.authority)
                    .await
                    .with_context(|| format!("connecting to {}", self.authority))?;
                stream.set_nodelay(true)?;
                self.stream.insert(stream)
            }
        };
        stream.write_all(&self.request).await?;
        self.received.clear();
        loop {
            if let Some((status, keep_alive, consumed)) = self.answer_received()? {
                if consumed != self.received.len() {
                    bail!("the server sent more than one answer to one request");
                }
                if !keep_alive {
                    self.stream = None;
                }
                return Ok(status);
            }
            if self.received.len() > MAX_ANSWER_BYTES {
                bail!("answer larger than {MAX_ANSWER_BYTES} bytes");
            }
            let stream = self
                .stream
                .as_mut()
                .context("connection dropped mid-answer")?;
            if stream.read_buf(&mut self.received).await? == 0 {
                bail!("the server closed the connection before answering in full");
            }
        }
    }

    /// The status, whether the connection stays open and the bytes used, once `received` holds a
    /// whole answer (its body then in `body`); `None` while more is needed.
    fn answer_received(&mut self) -> Result<Option<(u16, bool, usize)>> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head = match response.parse(&self.received)? {
            httparse::Status::Complete(head) => head,
            httparse::Status::Partial if self.received.len() > MAX_HEAD_BYTES => {
                bail!("answer head larger than {MAX_HEAD_BYTES} bytes")
            }
            httparse::Status::Partial => return Ok(None),
        };
        let status = response.code.unwrap_or(0);
        let mut keep_alive = response.version == Some(1);
        let mut framing = None;
        for header in response.headers.iter() {
            let value = std::str::from_utf8(header.value).unwrap_or("").trim();
            if header.name.eq_ignore_ascii_case("content-length") {
                let length = value
                    .parse()
                    .with_context(|| format!("bad content-length {value:?}"))?;
                framing = Some(Framing::Length { head, length });
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                if !value.eq_ignore_ascii_case("chunked") {
                    bail!("unsupported transfer-encoding {value:?}");
                }
                framing = Some(Framing::Chunked { head });
            } else if header.name.eq_ignore_ascii_case("connection") {
                keep_alive = !value.eq_ignore_ascii_case("close");
            }
        }
        let consumed = match framing {
            Some(Framing::Length { head, length }) => {
                if self.received.len() < head + length {
                    return Ok(None);
                }
                self.body.clear();
                self.body
                    .extend_from_slice(&self.received[head..head + length]);
                head + length
            }
            Some(Framing::Chunked { head }) => {
                match dechunk(&self.received[head..], &mut self.body)? {
                    Some(used) => head + used,
                    None => return Ok(None),
                }
            }
            // Without either, the body runs to the close; only bodiless answers are expected here.
            None if status == 204 || status == 304 => {
                self.body.clear();
                head
            }
            None => bail!("answer {status} has neither content-length nor chunked encoding"),
        };
        Ok(Some((status, keep_alive, consumed)))
    }
}

/// Decodes a chunked body (no trailers) into `body`: the bytes used, or `None` if it is incomplete.
fn dechunk(mut data: &[u8], body: &mut Vec<u8>) -> Result<Option<usize>> {
    let total = data.len();
    body.clear();
    loop {
        let Some(line_end) = data.windows(2).position(|pair| pair == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        let chunk_start = line_end + 2;
        if data.len() < chunk_start + size + 2 {
            return Ok(None);
        }
        if &data[chunk_start + size..chunk_start + size + 2] != b"\r\n" {
            bail!("chunk of {size} bytes not followed by CRLF");
        }
        body.extend_from_slice(&data[chunk_start..chunk_start + size]);
        data = &data[chunk_start + size + 2..];
        if size == 0 {
            return Ok(Some(total - data.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            authority_of("http://127.0.0.1:7001/v1").unwrap(),
            "127.0.0.1:7001"
        );
        assert_eq!(authority_of("http://h:1").unwrap(), "h:1");
        assert_eq!(authority_of("http://h").unwrap(), "h:80");
        assert!(authority_of("https://h:1").is_err());
        assert!(authority_of("127.0.0.1:7001").is_err());
        assert_eq!(url_path("http://h:1/v3/kv/put").unwrap(), "/v3/kv/put");
        assert_eq!(
            url_path("http://h:1/a?from=1&limit=2").unwrap(),
            "/a?from=1&limit=2"
        );
        assert_eq!(url_path("http://h:1").unwrap(), "/");
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::net::TcpListener;

    /// A server on 127.0.0.1 that answers each request on a connection with the next of `answers`
    /// (raw bytes, in several writes where split at `|`), then closes it. Counts connections.
    async fn server(answers: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    for answer in answers {
                        let mut request = Vec::new();
                        // Read one whole request: a head, then content-length bytes if any.
                        loop {
                            let Ok(n) = socket.read(&mut buffer).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            request.extend_from_slice(&buffer[..n]);
                            let text = String::from_utf8_lossy(&request).to_string();
                            if let Some(end) = text.find("\r\n\r\n") {
                                let length = text
                                    .lines()
                                    .find_map(|l| l.strip_prefix("content-length: "))
                                    .map_or(0, |v| v.parse::<usize>().unwrap());
                                if request.len() >= end + 4 + length {
                                    break;
                                }
                            }
                        }
                        for part in answer.split('|') {
                            if socket.write_all(part.as_bytes()).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn sequential_calls_share_one_connection_and_bodies_arrive_whole() {
        let (authority, accepted) = server(vec![
            "HTTP/1.1 201 Created\r\ncontent-length: 11\r\n\r\n{\"index\":7}",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhe|llo",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n|2\r\nde\r\n0\r\n\r\n",
        ])
        .await;
        let mut connection = Http1Connection::new(authority);
        let (status, body) = connection
            .call("POST", "/v1/messages", Some(b"{\"text\":\"x\"}"), SECOND)
            .await
            .unwrap();
        assert_eq!((status, body), (201, &b"{\"index\":7}"[..]));
        let (status, body) = connection.call("GET", "/a", None, SECOND).await.unwrap();
        assert_eq!((status, body), (200, &b"hello"[..]));
        let (status, body) = connection.call("GET", "/b", None, SECOND).await.unwrap();
        assert_eq!((status, body), (200, &b"abcde"[..]));
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_on_the_next_call() {
        let (authority, accepted) =
            server(vec!["HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]).await;
        let mut connection = Http1Connection::new(authority);
        connection.call("GET", "/", None, SECOND).await.unwrap();
        // The server closes after one answer: the next call fails, the one after reconnects.
        let second = connection.call("GET", "/", None, SECOND).await;
        assert!(second.is_err(), "{second:?}");
        let (status, _) = connection.call("GET", "/", None, SECOND).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connection_close_is_honoured_and_malformed_answers_are_errors() {
        let (authority, accepted) = server(vec![
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        ])
        .await;
        let mut connection = Http1Connection::new(authority.clone());
        connection.call("GET", "/", None, SECOND).await.unwrap();
        connection.call("GET", "/", None, SECOND).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        let (authority, _) = server(vec!["HTTP/1.1 200 OK\r\n\r\nbody to the close"]).await;
        let error = Http1Connection::new(authority)
            .call("GET", "/", None, SECOND)
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("neither content-length"),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_port_fails_to_connect() {
        // Accepts, reads the request and never answers, holding the connection open.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut sink = Vec::new();
            socket.read_to_end(&mut sink).await.ok();
        });
        let error = Http1Connection::new(authority)
            .call("GET", "/", None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("no answer within"),
            "{error:#}"
        );

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = closed.local_addr().unwrap().to_string();
        drop(closed);
        let error = Http1Connection::new(authority)
            .call("GET", "/", None, SECOND)
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("connecting"), "{error:#}");
    }
}
