//! The CLI's side of the admin endpoint (`onem2m-sa sa list|remove`): one HTTP/1.1 request
//! over loopback.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest admin answer read.
const MAX_ANSWER: usize = 4 << 20;

/// Sends `method path` to the admin endpoint at `addr`; returns the status and the body.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER as u64).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("no answer from the admin endpoint at {addr}"))?
        .map_err(|e| format!("cannot reach the admin endpoint at {addr}: {e}"))?;
    parse(&raw).ok_or_else(|| format!("the admin endpoint at {addr} sent an unreadable answer").into())
}

fn parse(raw: &[u8]) -> Option<(u16, String)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// Formats the JSON of `GET /sa` as a table.
pub fn format_sa_list(json: &str) -> Result<String, Box<dyn std::error::Error>> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let mut out = format!("node {}\n", v["node"].as_str().unwrap_or("?"));
    let sas = v["sas"].as_array().cloned().unwrap_or_default();
    if sas.is_empty() {
        out.push_str("no SAs\n");
        return Ok(out);
    }
    out.push_str(&format!("{:<18} {:<9} {:<22} {:<34} {}\n", "SA", "DIRECTION", "PEER", "SUITE", "EXPIRES (UNIX)"));
    for sa in sas {
        out.push_str(&format!(
            "{:<18} {:<9} {:<22} {:<34} {}\n",
            sa["sa_id"].as_str().unwrap_or("?"),
            sa["direction"].as_str().unwrap_or("?"),
            sa["peer"].as_str().unwrap_or("?"),
            sa["suite"].as_str().unwrap_or("?"),
            sa["expires_unix"]
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_plain_and_chunked() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"), Some((200, "ok".into())));
        let chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked), Some((404, "abcde".into())));
        assert_eq!(parse(b"garbage"), None);
    }

    #[test]
    fn sa_lists_format_as_a_table() {
        let json = r#"{"node":"/id-in","sas":[{"sa_id":"00112233445566ff","peer":"/id-asn","direction":"inbound","suite":"X25519_AES128GCM_SHA256","expires_unix":5}]}"#;
        let table = format_sa_list(json).unwrap();
        assert!(table.contains("00112233445566ff") && table.contains("inbound") && table.contains("/id-asn"));
        assert!(format_sa_list(r#"{"node":"/x","sas":[]}"#).unwrap().contains("no SAs"));
    }
}
