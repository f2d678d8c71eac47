//! A fault-injecting HTTP proxy in front of a test registry: it can answer with an error
//! status for the first N requests, cut a blob response short, break an upload half-way,
//! delay requests, rewrite answers (status, headers) the way odd registries write them, or
//! replace an answer entirely. Faults select requests by a piece of their request line
//! (`PATCH /v2/app/blobs/uploads/…`): a path piece, or a method and path. Every connection
//! carries one request (`Connection: close` is forced), which keeps the proxy a few lines
//! of blocking I/O. Request heads are logged for assertions (counting uploads, say).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer the next `count` requests whose request line contains `path_contains` (`""`:
    /// any) with `status` (and `Retry-After` when given), without forwarding them.
    Status { path_contains: String, status: u16, retry_after: Option<u32>, count: usize },
    /// For the next `count` requests whose path contains `path_contains`, forward but
    /// close the connection after `body_bytes` bytes of the response body.
    Truncate { path_contains: String, body_bytes: usize, count: usize },
    /// Forward requests without their `Range` header, as a registry that ignores ranges
    /// (the whole blob comes back with 200).
    IgnoreRange,
    /// Answer requests whose path contains `path_contains` with this response.
    Respond { path_contains: String, status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// For the next `count` matching requests, forward the head and `body_bytes` bytes of
    /// the request body, then close both connections: an upload broken half-way, which
    /// the registry has partly received.
    BreakUpload { path_contains: String, body_bytes: usize, count: usize },
    /// Wait `millis` before forwarding the next `count` matching requests.
    Delay { path_contains: String, millis: u64, count: usize },
    /// Rewrite the registry's answers to matching requests: a status for another
    /// (`201` for `202`, say), headers removed (by name, any case) or added.
    Rewrite {
        path_contains: String,
        status: Option<(u16, u16)>,
        remove_headers: Vec<String>,
        add_headers: Vec<(String, String)>,
    },
}

pub struct FaultProxy {
    /// `127.0.0.1:<port>` to use as the registry.
    pub host: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(Mutex::new(faults));
        let upstream = upstream.to_string();
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (requests, faults, upstream) =
                                (requests.clone(), faults.clone(), upstream.clone());
                            std::thread::spawn(move || {
                                let _ = handle(client, &upstream, &requests, &faults);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FaultProxy { host, requests, stop, thread: Some(thread) }
    }

    /// The request heads seen so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = data.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&data).into_owned(), rest));
        }
        let n = stream.read(&mut byte)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the head ended",
            ));
        }
        data.extend_from_slice(&byte[..n]);
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<String>>,
    faults: &Mutex<Vec<Fault>>,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    // A TLS handshake (clients try HTTPS first on loopback): answer like a plain HTTP
    // server does, with garbage for TLS, and do not count it as a request.
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 1 && first[0] == 0x16 {
        client.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let (head, body_start) = read_head(&mut client)?;
    log.lock().unwrap().push(head.clone());
    let path = head.split("\r\n").next().unwrap_or_default().to_string();
    let length: usize = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    // A request answered here is read whole first, as a server would, so that the client
    // is not cut off while it still sends.
    let drain = |client: &mut TcpStream| {
        let rest = length.saturating_sub(body_start.len()) as u64;
        std::io::copy(&mut client.take(rest), &mut std::io::sink()).map(|_| ())
    };
    let mut truncate = None;
    let mut ignore_range = false;
    let mut break_upload = None;
    let mut rewrite = None;
    {
        let mut faults = faults.lock().unwrap();
        for fault in faults.iter_mut() {
            match fault {
                Fault::Status { path_contains, status, retry_after, count }
                    if *count > 0 && path.contains(path_contains.as_str()) =>
                {
                    *count -= 1;
                    drain(&mut client)?;
                    let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#;
                    let retry =
                        retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
                    let answer = format!(
                        "HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n",
                        body.len()
                    );
                    client.write_all(answer.as_bytes())?;
                    client.write_all(body)?;
                    return Ok(());
                }
                Fault::Respond { path_contains, status, headers, body }
                    if path.contains(path_contains.as_str()) =>
                {
                    drain(&mut client)?;
                    let mut answer = format!(
                        "HTTP/1.1 {status} Replaced\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in headers.iter() {
                        answer.push_str(&format!("{name}: {value}\r\n"));
                    }
                    answer.push_str("\r\n");
                    client.write_all(answer.as_bytes())?;
                    client.write_all(body)?;
                    return Ok(());
                }
                Fault::Truncate { path_contains, body_bytes, count }
                    if *count > 0 && path.contains(path_contains.as_str()) =>
                {
                    *count -= 1;
                    truncate = Some(*body_bytes);
                    break;
                }
                Fault::IgnoreRange => ignore_range = true,
                Fault::BreakUpload { path_contains, body_bytes, count }
                    if *count > 0 && path.contains(path_contains.as_str()) =>
                {
                    *count -= 1;
                    break_upload = Some(*body_bytes);
                    break;
                }
                Fault::Delay { path_contains, millis, count }
                    if *count > 0 && path.contains(path_contains.as_str()) =>
                {
                    *count -= 1;
                    std::thread::sleep(Duration::from_millis(*millis));
                }
                Fault::Rewrite { path_contains, status, remove_headers, add_headers }
                    if path.contains(path_contains.as_str()) =>
                {
                    rewrite = Some((*status, remove_headers.clone(), add_headers.clone()));
                }
                _ => {}
            }
        }
    }
    let mut server = TcpStream::connect(upstream)?;
    let mut forwarded: Vec<String> = head
        .trim_end()
        .split("\r\n")
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            let dropped_range = ignore_range && line.starts_with("range:");
            !(line.starts_with("connection:") || dropped_range)
        })
        .map(str::to_string)
        .collect();
    forwarded.push("Connection: close".into());
    server.write_all(format!("{}\r\n\r\n", forwarded.join("\r\n")).as_bytes())?;
    if let Some(limit) = break_upload {
        let first = body_start.len().min(limit);
        server.write_all(&body_start[..first])?;
        let rest = (limit - first).min(length.saturating_sub(body_start.len())) as u64;
        std::io::copy(&mut (&mut client).take(rest), &mut server)?;
        server.flush()?;
        // Give the registry a moment to store what it got before the connection breaks.
        std::thread::sleep(Duration::from_millis(50));
        let _ = server.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    server.write_all(&body_start)?;
    let rest = length.saturating_sub(body_start.len()) as u64;
    std::io::copy(&mut (&mut client).take(rest), &mut server)?;
    if let Some((status, remove, add)) = rewrite {
        let (response_head, body) = read_head(&mut server)?;
        client.write_all(rewrite_head(&response_head, status, &remove, &add).as_bytes())?;
        client.write_all(&body)?;
        std::io::copy(&mut server, &mut client)?;
        client.flush()?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    match truncate {
        None => {
            std::io::copy(&mut server, &mut client)?;
        }
        Some(limit) => {
            let (response_head, body) = read_head(&mut server)?;
            client.write_all(response_head.as_bytes())?;
            let mut sent = body.len().min(limit);
            client.write_all(&body[..sent])?;
            let mut buffer = [0u8; 4096];
            while sent < limit {
                let n = server.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                let take = n.min(limit - sent);
                client.write_all(&buffer[..take])?;
                sent += take;
            }
        }
    }
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

/// A response head with its status replaced (when it is `from`) and headers changed.
fn rewrite_head(
    head: &str,
    status: Option<(u16, u16)>,
    remove: &[String],
    add: &[(String, String)],
) -> String {
    let mut lines: Vec<String> = head.trim_end().split("\r\n").map(str::to_string).collect();
    if let Some((from, to)) = status {
        let prefix = format!("HTTP/1.1 {from} ");
        if lines[0].starts_with(&prefix) {
            lines[0] = format!("HTTP/1.1 {to} Rewritten");
        }
    }
    lines.retain(|line| {
        let name = line.split(':').next().unwrap_or_default();
        !remove.iter().any(|r| r.eq_ignore_ascii_case(name.trim()))
    });
    lines.extend(add.iter().map(|(name, value)| format!("{name}: {value}")));
    format!("{}\r\n\r\n", lines.join("\r\n"))
}
