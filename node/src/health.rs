//! `flotilla-node health`: a container health check that needs no curl. A plain HTTP/1.1 GET of
//! `/v1/status` over a std TCP stream; healthy means a 200 answer within two seconds.

use crate::transport::client::authority_of;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

pub fn check(url: &str) -> ExitCode {
    match probe(url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("flotilla-node health: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Ok when the node at `url` answers `/v1/status` with 200 within two seconds; else why not.
pub fn probe(url: &str) -> Result<(), String> {
    let authority = authority_of(url).map_err(|e| e.to_string())?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET /v1/status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut head = [0u8; 32];
    let read = stream
        .read(&mut head)
        .map_err(|e| format!("no answer: {e}"))?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "unhealthy answer: {}",
            status_line.lines().next().unwrap_or("")
        ))
    }
}
