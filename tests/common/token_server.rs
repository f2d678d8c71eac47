//! A Docker-style token server for tests (`auth: token:` in the registry's config): it
//! answers `GET /token?service=…&scope=…` (Basic credentials optional) and OAuth2
//! `POST /token` with `grant_type=refresh_token`, issuing RS256 JWTs signed with `openssl`
//! and carrying the signing certificate in `x5c`, which the registry trusts through its
//! `rootcertbundle`. Every request is logged for assertions.

use base64::Engine;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "kiln-test-registry";
pub const ISSUER: &str = "kiln-test-issuer";

/// One request the token server received.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub method: String,
    pub params: HashMap<String, Vec<String>>,
    /// The Basic user, if any.
    pub user: Option<String>,
}

#[derive(Clone)]
struct Accounts {
    user: (String, String),
    refresh_token: String,
}

pub struct TokenServer {
    _dir: tempfile::TempDir,
    /// The certificate bundle the registry must trust.
    pub cert: PathBuf,
    /// `http://127.0.0.1:<port>/token`.
    pub realm: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Grants the asked access to `user`/`password` (Basic; with `offline_token=true` the
    /// answer carries `refresh_token` too) and to holders of `refresh_token`; anonymous
    /// requests get a token without access; wrong passwords get 401.
    pub fn start(user: &str, password: &str, refresh_token: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kiln test token issuer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(status.status.success(), "openssl: {}", String::from_utf8_lossy(&status.stderr));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accounts =
            Accounts { user: (user.into(), password.into()), refresh_token: refresh_token.into() };
        let thread = {
            let (requests, stop, key) = (requests.clone(), stop.clone(), key.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &key, &der, &accounts, &requests);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        TokenServer { _dir: dir, cert, realm, requests, stop, thread: Some(thread) }
    }

    /// The registry configuration block for this token server.
    pub fn registry_auth_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_params(text: &str) -> HashMap<String, Vec<String>> {
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params.entry(percent_decode(key)).or_default().push(percent_decode(value));
    }
    params
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(key: &Path, message: &str) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}

/// A JWT granting `actions` on each `repository:<name>:<actions>` scope (none if empty).
fn issue(key: &Path, cert_der: &[u8], subject: &str, scopes: &[String], grant: bool) -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let access: Vec<serde_json::Value> = if grant {
        scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|scope| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect()
    } else {
        Vec::new()
    };
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)],
    });
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("kiln-{now}-{}", SERIAL.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = sign(key, &signing_input);
    format!("{signing_input}.{}", b64url(&signature))
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes())
}

fn serve(
    mut stream: TcpStream,
    key: &Path,
    cert_der: &[u8],
    accounts: &Accounts,
    log: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        data.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buffer[..n]);
    }
    let body = String::from_utf8_lossy(&data[head_end..]).into_owned();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params = if method == "POST" { parse_params(&body) } else { parse_params(query) };
    let user = headers.get("authorization").and_then(|value| {
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    });
    log.lock().unwrap().push(TokenRequest {
        method: method.clone(),
        params: params.clone(),
        user: user.as_ref().map(|u| u.0.clone()),
    });
    let scopes = params.get("scope").cloned().unwrap_or_default();
    if method == "POST" {
        let refresh =
            params.get("refresh_token").and_then(|v| v.first()).cloned().unwrap_or_default();
        if params.get("grant_type").and_then(|v| v.first()).map(String::as_str)
            != Some("refresh_token")
            || refresh != accounts.refresh_token
        {
            return respond(
                &mut stream,
                "401 Unauthorized",
                r#"{"error":"invalid_grant","error_description":"bad refresh token"}"#,
            );
        }
        let token = issue(key, cert_der, "refresh-user", &scopes, true);
        return respond(
            &mut stream,
            "200 OK",
            &serde_json::json!({"access_token": token, "expires_in": 300}).to_string(),
        );
    }
    match user {
        Some((user, password))
            if (user.as_str(), password.as_str())
                != (accounts.user.0.as_str(), accounts.user.1.as_str()) =>
        {
            respond(
                &mut stream,
                "401 Unauthorized",
                r#"{"details":"incorrect username or password"}"#,
            )
        }
        Some((user, _)) => {
            let token = issue(key, cert_der, &user, &scopes, true);
            let mut answer = serde_json::json!({"token": token, "expires_in": 300});
            // `docker login` asks for a refresh token to keep instead of the password.
            if params.get("offline_token").is_some_and(|v| v.iter().any(|v| v == "true")) {
                answer["refresh_token"] = accounts.refresh_token.clone().into();
            }
            respond(&mut stream, "200 OK", &answer.to_string())
        }
        None => {
            let token = issue(key, cert_der, "", &scopes, false);
            respond(&mut stream, "200 OK", &serde_json::json!({"token": token}).to_string())
        }
    }
}
