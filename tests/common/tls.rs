//! A throw-away certificate authority and a server certificate for `127.0.0.1`/`localhost`,
//! made with the `openssl` command.

use std::path::PathBuf;
use std::process::Command;

pub struct TestCa {
    _dir: tempfile::TempDir,
    ca_key: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn openssl(args: &[&str], cwd: &std::path::Path) {
    let output = Command::new("openssl").args(args).current_dir(cwd).output().expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    pub fn generate() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=kiln test CA",
        ]);
        ca.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&ca, d);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
        openssl(&csr, d);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
            d,
        );
        TestCa {
            ca_key: d.join("ca.key"),
            ca_cert: d.join("ca.crt"),
            server_cert: d.join("server.crt"),
            server_key: d.join("server.key"),
            _dir: dir,
        }
    }
}

impl TestCa {
    /// Writes a client certificate signed by this CA and its key into `dir`, as
    /// `client.cert` and `client.key` (the names Docker's `certs.d` uses).
    pub fn issue_client_cert(&self, dir: &std::path::Path) {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=kiln test client",
        ]);
        openssl(&csr, dir);
        std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
        let (ca_cert, ca_key) = (self.ca_cert.to_str().unwrap(), self.ca_key.to_str().unwrap());
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                ca_cert,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-out",
                "client.cert",
                "-days",
                "2",
                "-extfile",
                "client.cnf",
            ],
            dir,
        );
        std::fs::remove_file(dir.join("client.csr")).unwrap();
        std::fs::remove_file(dir.join("client.cnf")).unwrap();
    }
}
