//! A real registry for tests: Debian's `docker-registry` on a free loopback port, with its
//! storage in a temp dir; plain HTTP, htpasswd Basic auth, or TLS. The process is started
//! through `setpriv --pdeathsig KILL` so it dies with the test process even when that is
//! killed, and is killed on drop (also while a failed test unwinds).

use super::tls::TestCa;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// `127.0.0.1:<port>`, the registry part of references.
    pub host: String,
    /// The CA that signed the server certificate, for TLS registries.
    pub ca: Option<TestCa>,
    /// `(user, password)` accepted by an htpasswd registry.
    pub user: Option<(String, String)>,
}

#[derive(Default)]
pub struct Options {
    pub htpasswd: Option<(String, String)>,
    pub tls: bool,
    /// A raw `auth:` block, e.g. from [`super::token_server::TokenServer::registry_auth_config`].
    pub auth_config: Option<String>,
    /// `Location` headers relative to the host (`http.relativeurls`), as some registries
    /// write them.
    pub relative_urls: bool,
    /// With `tls`: demand a client certificate signed by the test CA (`http.tls.clientcas`).
    pub client_certificates: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

static SHARED: OnceLock<TestRegistry> = OnceLock::new();

impl TestRegistry {
    /// A plain registry shared by every test of the test binary: started on first use,
    /// stopped and its storage removed when the process exits.
    pub fn shared() -> &'static TestRegistry {
        SHARED.get_or_init(|| {
            // The parent-death signal follows the *thread* that started the registry, and
            // libtest ends a test's thread with the test: start it from one that never ends.
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = sender.send(TestRegistry::plain());
                loop {
                    std::thread::park();
                }
            });
            let registry = receiver.recv().expect("the shared registry started");
            super::at_exit::on_exit(|| SHARED.get().map_or((), TestRegistry::stop));
            registry
        })
    }

    /// Kills the registry and removes its storage, for a registry that is never dropped.
    fn stop(&self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }

    pub fn plain() -> TestRegistry {
        TestRegistry::start(Options::default())
    }

    pub fn with_htpasswd(user: &str, password: &str) -> TestRegistry {
        TestRegistry::start(Options {
            htpasswd: Some((user.into(), password.into())),
            ..Options::default()
        })
    }

    pub fn tls() -> TestRegistry {
        TestRegistry::start(Options { tls: true, ..Options::default() })
    }

    pub fn start(options: Options) -> TestRegistry {
        // A free port can be taken by someone else before the registry binds it: retry.
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let ca = options.tls.then(TestCa::generate);
            let mut auth = options.auth_config.clone().unwrap_or_default();
            if let Some((user, password)) = &options.htpasswd {
                let output = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("run htpasswd");
                assert!(
                    output.status.success(),
                    "htpasswd failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                std::fs::write(dir.path().join("htpasswd"), &output.stdout).unwrap();
                auth = format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                );
            }
            let port = free_port();
            let mut tls = match &ca {
                Some(ca) => format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    ca.server_cert.display(),
                    ca.server_key.display()
                ),
                None => String::new(),
            };
            if let (Some(ca), true) = (&ca, options.client_certificates) {
                tls.push_str(&format!("    clientcas:\n      - {}\n", ca.ca_cert.display()));
            }
            if options.relative_urls {
                tls.push_str("  relativeurls: true\n");
            }
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n{tls}{auth}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "docker-registry", "serve"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let mut registry = TestRegistry {
                child,
                dir,
                port,
                host: format!("127.0.0.1:{port}"),
                ca,
                user: options.htpasswd.clone(),
            };
            if registry.wait_ready(options.tls) {
                return registry;
            }
            last_log = registry.log();
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// Waits until `/v2/` answers (plain) or the TLS port accepts connections.
    fn wait_ready(&mut self, tls: bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                if tls {
                    return true;
                }
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let request = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.host
                );
                let mut answer = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.1 ")
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The registry's log (errors only), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(|ca| ca.ca_cert.clone())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
