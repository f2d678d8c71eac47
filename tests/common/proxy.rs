//! A fault-injecting HTTP proxy in front of a test registry: it can answer with an error
//! status for the first N requests, cut a blob response short, or replace an answer
//! entirely. Every connection carries one request (`Connection: close` is forced), which
//! keeps the proxy a few lines of blocking I/O. Request heads are logged for assertions.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer the next `count` requests whose path contains `path_contains` (`""`: any)
    /// with `status` (and `Retry-After` when given).
    Status { path_contains: String, status: u16, retry_after: Option<u32>, count: usize },
    /// For the next `count` requests whose path contains `path_contains`, forward but
    /// close the connection after `body_bytes` bytes of the response body.
    Truncate { path_contains: String, body_bytes: usize, count: usize },
    /// Forward requests without their `Range` header, as a registry that ignores ranges
    /// (the whole blob comes back with 200).
    IgnoreRange,
    /// Answer requests whose path contains `path_contains` with this response.
    Respond { path_contains: String, status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
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
    let path = head.split(' ').nth(1).unwrap_or_default().to_string();
    let mut truncate = None;
    let mut ignore_range = false;
    {
        let mut faults = faults.lock().unwrap();
        for fault in faults.iter_mut() {
            match fault {
                Fault::Status { path_contains, status, retry_after, count }
                    if *count > 0 && path.contains(path_contains.as_str()) =>
                {
                    *count -= 1;
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
    server.write_all(&body_start)?;
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
