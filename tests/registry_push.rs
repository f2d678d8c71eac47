//! Pushing and logging in, end to end against real `docker-registry` instances on
//! 127.0.0.1 (plain HTTP, htpasswd, TLS with a test CA and client certificates, a token
//! server, relative `Location`s), through a fault-injecting proxy where the test needs to
//! see or disturb the traffic. What was pushed is read back with skopeo (or kiln's pull
//! where skopeo cannot reach), by digest. Skipped with a message when the tools are
//! missing, unless `KILN_E2E=1`.

mod common;

use base64::Engine;
use common::proxy::{Fault, FaultProxy};
use common::registry::{Options, TestRegistry};
use common::token_server::TokenServer;
use common::tools;
use kiln::registry::credentials::ProcessHelperRunner;
use kiln::registry::push::{MountSources, PushEvent, PushImage};
use kiln::registry::upload::BlobOutcome;
use kiln::registry::{
    ClientOptions, CredentialStore, Descriptor, Digest, Reference, RegistryClient, RetryPolicy,
    SystemTls,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOOLS: &[&str] = &["docker-registry", "skopeo", "setpriv", "openssl", "htpasswd"];

#[track_caller]
fn ready() -> bool {
    tools::root_and_available("the push tests", TOOLS)
}

// ---------------------------------------------------------------------------------------
// The kiln binary, in a home of its own (so no test reads or writes the real
// ~/.docker/config.json).

struct Kiln {
    home: tempfile::TempDir,
    root: tempfile::TempDir,
    context: tempfile::TempDir,
    path: Option<String>,
}

impl Kiln {
    /// A home, a state root, and a context whose image has two layers.
    fn new() -> Kiln {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY a /a\nCOPY b /b\n")
            .unwrap();
        std::fs::write(context.path().join("a"), "first layer\n").unwrap();
        let noise: Vec<u8> =
            (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(context.path().join("b"), noise).unwrap();
        Kiln {
            home: tempfile::tempdir().unwrap(),
            root: tempfile::tempdir().unwrap(),
            context,
            path: None,
        }
    }

    fn dockerfile(&self, text: &str) {
        std::fs::write(self.context.path().join("Dockerfile"), text).unwrap();
    }

    fn docker_config(&self) -> PathBuf {
        self.home.path().join(".docker/config.json")
    }

    fn certs_dir(&self, host: &str) -> PathBuf {
        let dir = self.home.path().join(".config/kiln/certs.d").join(host);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `kiln --root ROOT ARGS` with `stdin`.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("KILN_REGISTRY_CA_FILE")
            .env_remove("KILN_INSECURE_REGISTRIES")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut input, text.as_bytes()).unwrap();
        }
        drop(input);
        let output = child.wait_with_output().unwrap();
        eprintln!(
            "kiln {args:?}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `kiln build --progress plain ARGS CONTEXT`.
    fn build(&self, args: &[&str]) -> Output {
        let context = self.context.path().to_str().unwrap().to_string();
        let mut all = vec!["build"];
        if !args.contains(&"--progress") {
            all.extend(["--progress", "plain"]);
        }
        all.extend(args);
        all.push(&context);
        self.run(&all, None)
    }

    #[track_caller]
    fn build_ok(&self, args: &[&str]) -> Output {
        let output = self.build(args);
        assert!(output.status.success(), "kiln build {args:?} failed");
        output
    }

    fn login(&self, host: &str, user: &str, password: &str) -> Output {
        self.run(&["login", host, "-u", user, "--password-stdin"], Some(&format!("{password}\n")))
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

/// Requests of the proxy's log whose request line starts with `prefix` (`POST /v2/app/`).
fn count(requests: &[String], prefix: &str) -> usize {
    requests.iter().filter(|head| head.starts_with(prefix)).count()
}

fn uploads(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|head| {
            let line = head.lines().next().unwrap_or_default();
            line.contains("/blobs/uploads/")
                && (line.starts_with("POST")
                    || line.starts_with("PATCH")
                    || line.starts_with("PUT"))
        })
        .count()
}

// ---------------------------------------------------------------------------------------
// The CLI: build --push, outputs, kiln push, metadata.

#[test]
fn build_pushes_two_tags_then_nothing_new() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let proxy = FaultProxy::start(&registry.host, vec![]);
    let kiln = Kiln::new();
    let meta = kiln.home.path().join("meta.json");
    let (one, two) = (format!("{}/app:1", proxy.host), format!("{}/app:2", proxy.host));
    let meta_arg = meta.to_str().unwrap();
    kiln.build_ok(&["--push", "-t", &one, "-t", &two, "--metadata-file", meta_arg]);
    let meta = metadata(&meta);
    let digest = meta["containerimage.digest"].as_str().unwrap().to_string();
    assert_eq!(meta["image.name"], format!("{one},{two}"));
    for tag in ["1", "2"] {
        let raw = common::skopeo::inspect_raw(&format!("{}/app:{tag}", registry.host), None);
        assert_eq!(sha256(&raw), digest, "tag {tag} holds the pushed manifest, byte for byte");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&common::skopeo::inspect_raw(
        &format!("{}/app:1", registry.host),
        None,
    ))
    .unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    let layout = tempfile::tempdir().unwrap();
    common::skopeo::copy_to_layout(&format!("{}/app:2", registry.host), layout.path(), "back");
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let blob = std::fs::read(layout.path().join("blobs/sha256").join(&digest[7..])).unwrap();
        assert_eq!(sha256(&blob), digest);
    }
    let first = proxy.requests();
    assert_eq!(count(&first, "POST /v2/app/blobs/uploads/"), 3, "two layers and the config");
    assert_eq!(count(&first, "PUT /v2/app/manifests/"), 2);

    // The same image again: every blob is there, only the tags are put again.
    kiln.build_ok(&["--push", "-t", &one, "-t", &two]);
    let second = &proxy.requests()[first.len()..];
    assert_eq!(uploads(second), 0, "nothing uploaded twice: {second:#?}");
    assert_eq!(count(second, "HEAD /v2/app/blobs/"), 3);
    assert_eq!(count(second, "PUT /v2/app/manifests/"), 2);

    // Docker media types on request; the blobs are the same, the manifest is not.
    let docker = format!("{}/app:docker", registry.host);
    kiln.build_ok(&["-o", &format!("type=registry,name={docker},oci-mediatypes=false")]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&common::skopeo::inspect_raw(&docker, None)).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");

    // type=image,push=true: stored and pushed; kiln push then has nothing new to send.
    let stored = format!("{}/app:stored", proxy.host);
    kiln.build_ok(&["-o", &format!("type=image,name={stored},push=true")]);
    let before = proxy.requests().len();
    let output = kiln.run(&["push", &stored], None);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("stored: digest: {digest} size: {}\n", manifest_size(&registry, "app:1"))
    );
    assert_eq!(uploads(&proxy.requests()[before..]), 0);

    let output = kiln.run(&["push", &format!("{}/app:absent", proxy.host)], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no such image"), "{}", stderr(&output));
    // A base image's layers are mounted from its repository, not uploaded again.
    common::busybox::push_busybox(&registry, "busybox", "latest", &Default::default());
    kiln.dockerfile(&format!("FROM {}/busybox\nCOPY a /a\n", proxy.host));
    let before = proxy.requests().len();
    let output = kiln.build_ok(&["--push", "-t", &format!("{}/derived:1", proxy.host)]);
    let requests = &proxy.requests()[before..];
    let mounts: Vec<&String> = requests
        .iter()
        .filter(|r| {
            r.starts_with("POST /v2/derived/blobs/uploads/?mount=") && r.contains("from=busybox")
        })
        .collect();
    assert_eq!(mounts.len(), 1, "the busybox layer: {requests:#?}");
    assert!(all_output(&output).contains("mounted from busybox into"), "{}", all_output(&output));
}

fn manifest_size(registry: &TestRegistry, name: &str) -> usize {
    common::skopeo::inspect_raw(&format!("{}/{name}", registry.host), None).len()
}

#[test]
fn login_push_and_logout_with_basic_auth() {
    if !ready() {
        return;
    }
    let (user, password) = ("pusher", "Secr3t-Pa55word");
    let registry = TestRegistry::with_htpasswd(user, password);
    let host = registry.host.as_str();
    let kiln = Kiln::new();
    let tag = format!("{host}/private:1");

    // Not logged in: a clear refusal naming the registry, in the registry's words.
    let output = kiln.build(&["--push", "-t", &tag]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!(
            "push access denied for {host}/private: unauthorized: authentication required (HTTP 401; no credentials configured for registry {host})"
        )),
        "{}",
        stderr(&output)
    );

    // A wrong password is refused and not saved.
    let output = kiln.login(host, user, "not-the-password");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("login to registry {host} failed: unauthorized")),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("(HTTP 401)"));
    assert!(!kiln.docker_config().exists());
    let output = kiln.run(&["login", host, "--password-stdin"], Some(password));
    assert!(stderr(&output).contains("must provide --username with --password-stdin"));

    let output = kiln.login(host, user, password);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Login Succeeded\n");
    let config = metadata(&kiln.docker_config());
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    assert_eq!(config["auths"][host]["auth"], auth.as_str());

    // Pushes at every verbosity; no output holds the password (or its base64 form).
    let mut outputs = Vec::new();
    outputs.push(kiln.build_ok(&["--push", "-t", &tag]));
    let stored = format!("type=image,name={tag},push=true");
    outputs.push(kiln.build_ok(&["-o", &stored, "--progress", "rawjson"]));
    outputs.push(kiln.run(&["push", "--progress", "plain", &tag], None));
    assert!(outputs[2].status.success());
    let raw = common::skopeo::inspect_raw(&tag, Some((user, password)));
    assert!(all_output(&outputs[0]).contains(&sha256(&raw)));

    // Credentials the registry rejects: named by where they came from, never quoted.
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{user}:wrong-one"));
    let saved = std::fs::read_to_string(kiln.docker_config()).unwrap();
    std::fs::write(kiln.docker_config(), saved.replace(&auth, &wrong)).unwrap();
    let output = kiln.build(&["--push", "-t", &tag]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!(
            "push access denied for {host}/private: unauthorized: authentication required (HTTP 401; the credentials for registry {host} from {} were rejected)",
            kiln.docker_config().display()
        )),
        "{}",
        stderr(&output)
    );
    outputs.push(output);
    for output in &outputs {
        let text = all_output(output);
        for secret in [password, auth.as_str(), "wrong-one", wrong.as_str()] {
            assert!(!text.contains(secret), "a secret in the output:\n{text}");
        }
    }

    let output = kiln.run(&["logout", host], None);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("Removing login credentials for {host}\n")
    );
    assert_eq!(metadata(&kiln.docker_config())["auths"], serde_json::json!({}));
    let output = kiln.run(&["logout", host], None);
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("Not logged in to {host}\n"));
}

#[test]
fn login_and_logout_through_a_credential_helper() {
    if !ready() {
        return;
    }
    let (user, password) = ("helped", "helper-kept-secret");
    let registry = TestRegistry::with_htpasswd(user, password);
    let host = registry.host.as_str();
    let mut kiln = Kiln::new();
    // A helper keeping one credential in a file, as docker-credential-pass would.
    let bin = kiln.home.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let vault = kiln.home.path().join("vault");
    let script = format!(
        "#!/bin/sh\nvault='{vault}'\ncase \"$1\" in\n  store) cat > \"$vault\" ;;\n  get) read -r server; if [ -s \"$vault\" ]; then cat \"$vault\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) read -r server; rm -f \"$vault\" ;;\n  *) exit 3 ;;\nesac\n",
        vault = vault.display()
    );
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    kiln.path = Some(format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    std::fs::create_dir_all(kiln.docker_config().parent().unwrap()).unwrap();
    std::fs::write(kiln.docker_config(), r#"{"credsStore":"kilntest","psFormat":"table"}"#)
        .unwrap();

    let output = kiln.login(host, user, password);
    assert!(output.status.success());
    assert!(!stderr(&output).contains("stored unencrypted"), "a helper keeps the secret");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vault).unwrap()).unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"ServerURL": host, "Username": user, "Secret": password})
    );
    let config = std::fs::read_to_string(kiln.docker_config()).unwrap();
    assert!(!config.contains(password));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&config).unwrap(),
        serde_json::json!({"credsStore": "kilntest", "psFormat": "table", "auths": {host: {}}})
    );

    kiln.build_ok(&["--push", "-t", &format!("{host}/helped:1")]);
    let output = kiln.run(&["logout", host], None);
    assert!(output.status.success());
    assert!(!vault.exists(), "the helper was told to erase");
    let output = kiln.build(&["--push", "-t", &format!("{host}/helped:2")]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn tls_registry_with_certs_d_ca_and_client_certificate() {
    if !ready() {
        return;
    }
    let registry =
        TestRegistry::start(Options { tls: true, client_certificates: true, ..Options::default() });
    let ca = registry.ca.as_ref().unwrap();
    let host = registry.host.as_str();
    let kiln = Kiln::new();
    let tag = format!("{host}/secure:1");

    let output = kiln.build(&["--push", "-t", &tag]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&format!("cannot reach registry {host}")));
    assert!(stderr(&output).contains(&format!("certs.d/{host}/ca.crt")), "{}", stderr(&output));

    // The CA alone: the registry still wants a client certificate.
    let certs = kiln.certs_dir(host);
    std::fs::copy(&ca.ca_cert, certs.join("ca.crt")).unwrap();
    let output = kiln.build(&["--push", "-t", &tag]);
    assert_eq!(output.status.code(), Some(1));

    ca.issue_client_cert(&certs);
    let meta = kiln.home.path().join("meta.json");
    kiln.build_ok(&["--push", "-t", &tag, "--metadata-file", meta.to_str().unwrap()]);
    let digest = metadata(&meta)["containerimage.digest"].as_str().unwrap().to_string();

    // Read back with kiln's client over the same certs.d (skopeo has no client certificate).
    let client = RegistryClient::new(ClientOptions {
        tls: Arc::new(SystemTls::with_certs_dirs(
            vec![],
            vec![kiln.home.path().join(".config/kiln/certs.d")],
        )),
        ..options()
    });
    let manifest = client.get_manifest(&Reference::parse(&tag).unwrap()).unwrap();
    assert_eq!(manifest.digest.to_string(), digest);

    // A key without its certificate is refused, naming the files.
    std::fs::rename(certs.join("client.cert"), certs.join("client.pem")).unwrap();
    let output = kiln.build(&["--push", "-t", &tag]);
    assert!(
        stderr(&output).contains(&format!(
            "client key {} has no certificate {}",
            certs.join("client.key").display(),
            certs.join("client.cert").display()
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn login_and_push_with_a_token_server() {
    if !ready() {
        return;
    }
    let (user, password, refresh) = ("tokenuser", "token-pass-word", "refresh-me-please");
    let tokens = TokenServer::start(user, password, refresh);
    let registry = TestRegistry::start(Options {
        auth_config: Some(tokens.registry_auth_config()),
        ..Options::default()
    });
    let host = registry.host.as_str();
    let kiln = Kiln::new();

    let output = kiln.login(host, user, "wrong");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!(
            "login to registry {host} failed: incorrect username or password (HTTP 401)"
        )),
        "{}",
        stderr(&output)
    );
    // The token server gives a refresh token at login: it is saved instead of the password.
    let output = kiln.login(host, user, password);
    assert!(output.status.success());
    let login = tokens.requests().last().unwrap().clone();
    assert_eq!(login.params["offline_token"], ["true"]);
    assert_eq!(login.user.as_deref(), Some(user));
    let saved = std::fs::read_to_string(kiln.docker_config()).unwrap();
    assert!(!saved.contains(password));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&saved).unwrap()["auths"][host],
        serde_json::json!({"auth": auth, "identitytoken": refresh})
    );

    // Pushing exchanges it for a token scoped pull,push.
    let tag = format!("{host}/tokened:1");
    let output = kiln.build_ok(&["--push", "-t", &tag, "--progress", "rawjson"]);
    for secret in [password, refresh] {
        assert!(!all_output(&output).contains(secret));
    }
    let refreshes = |tokens: &TokenServer| -> Vec<Vec<String>> {
        let posts = tokens.requests().into_iter().filter(|r| r.method == "POST");
        posts.map(|r| r.params.get("scope").cloned().unwrap_or_default()).collect()
    };
    assert!(refreshes(&tokens).contains(&vec!["repository:tokened:pull,push".to_string()]));

    // A mount from another repository asks for pull access to it in the same token.
    let client = RegistryClient::new(ClientOptions {
        credentials: CredentialStore::new(
            vec![kiln.docker_config()],
            Arc::new(ProcessHelperRunner::default()),
        ),
        ..options()
    });
    let image = TestImage::new(&[&b"token layer"[..]]);
    let base = Reference::parse(&format!("{host}/tokened-base:1")).unwrap();
    image.push(&client, std::slice::from_ref(&base), &MountSources::new());
    let derived = Reference::parse(&format!("{host}/tokened-derived:1")).unwrap();
    let outcomes = image.push(&client, &[derived], &image.mounts_from(&base));
    assert_eq!(outcomes[0], BlobOutcome::Mounted { from: "tokened-base".into() });
    let mount_scope = "repository:tokened-derived:pull,push repository:tokened-base:pull";
    assert!(
        refreshes(&tokens).contains(&vec![mount_scope.to_string()]),
        "{:#?}",
        refreshes(&tokens)
    );
}

// ---------------------------------------------------------------------------------------
// The library: faults, quirks, mounts, failures.

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry: fast_retry(),
        timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

/// An image made of byte strings: layers, a config, an OCI manifest over them.
struct TestImage {
    layers: Vec<(Descriptor, Vec<u8>)>,
    config: (Descriptor, Vec<u8>),
    manifest: Vec<u8>,
}

impl TestImage {
    fn new(layers: &[&[u8]]) -> TestImage {
        let layers: Vec<(Descriptor, Vec<u8>)> = layers
            .iter()
            .map(|bytes| {
                let descriptor = Descriptor::new(
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    Digest::sha256_of(bytes),
                    bytes.len() as u64,
                );
                (descriptor, bytes.to_vec())
            })
            .collect();
        let config_bytes = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d.digest.to_string()).collect::<Vec<_>>()},
        })
        .to_string()
        .into_bytes();
        let config = Descriptor::new(
            "application/vnd.oci.image.config.v1+json",
            Digest::sha256_of(&config_bytes),
            config_bytes.len() as u64,
        );
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        }))
        .unwrap();
        TestImage { layers, config: (config, config_bytes), manifest }
    }

    fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest)
    }

    fn bytes_of(&self, digest: &Digest) -> &[u8] {
        let (_, bytes) = self
            .layers
            .iter()
            .chain([&self.config])
            .find(|(d, _)| d.digest == *digest)
            .expect("a blob of the image");
        bytes
    }

    fn mounts_from(&self, source: &Reference) -> MountSources {
        let from = (source.registry().to_string(), source.repository().to_string());
        self.layers.iter().map(|(d, _)| (d.digest.clone(), vec![from.clone()])).collect()
    }

    /// Pushes to `targets`; the layers' outcomes in the first target, in layer order.
    fn try_push(
        &self,
        client: &RegistryClient,
        targets: &[Reference],
        mounts: &MountSources,
    ) -> Result<Vec<BlobOutcome>, kiln::registry::RegistryError> {
        let image = PushImage {
            manifest: &self.manifest,
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json",
            manifest_digest: self.digest(),
            config: self.config.0.clone(),
            layers: self.layers.iter().map(|(d, _)| d.clone()).collect(),
        };
        let open = |d: &Descriptor| -> std::io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(self.bytes_of(&d.digest)))
        };
        let outcomes: Mutex<Vec<(Digest, BlobOutcome)>> = Mutex::new(Vec::new());
        let progress = |event: PushEvent<'_>| {
            if let PushEvent::BlobDone { target, descriptor, outcome } = event
                && *target == targets[0]
            {
                outcomes.lock().unwrap().push((descriptor.digest.clone(), outcome.clone()));
            }
        };
        client.push_image(targets, &image, &open, mounts, &progress)?;
        let outcomes = outcomes.into_inner().unwrap();
        Ok(self
            .layers
            .iter()
            .map(|(d, _)| outcomes.iter().find(|(o, _)| *o == d.digest).unwrap().1.clone())
            .collect())
    }

    #[track_caller]
    fn push(
        &self,
        client: &RegistryClient,
        targets: &[Reference],
        mounts: &MountSources,
    ) -> Vec<BlobOutcome> {
        self.try_push(client, targets, mounts).unwrap()
    }

    /// Reads the image back from `reference` with kiln's pull: same manifest bytes, same
    /// blob bytes.
    #[track_caller]
    fn check_pushed(&self, client: &RegistryClient, reference: &Reference) {
        let manifest = client.get_manifest(reference).unwrap();
        assert_eq!(manifest.bytes, self.manifest, "the manifest bytes, exactly");
        for (descriptor, bytes) in self.layers.iter().chain([&self.config]) {
            let mut back = Vec::new();
            client.fetch_blob(reference, descriptor, &mut back, &|_| {}).unwrap();
            assert!(back == *bytes, "blob {} comes back whole", descriptor.digest);
        }
    }
}

fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn at(host: &str, name: &str) -> Reference {
    Reference::parse(&format!("{host}/{name}")).unwrap()
}

#[test]
fn push_survives_a_faulty_network() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::shared();
    let big = noise(1_200_000, 1);
    let medium = noise(100_000, 2);
    let image = TestImage::new(&[&big, &medium, b"small"]);
    let faults = vec![
        Fault::Delay { path_contains: "HEAD /v2/faulty/".into(), millis: 100, count: 2 },
        Fault::BreakUpload { path_contains: "HEAD /v2/faulty/".into(), body_bytes: 0, count: 1 },
        Fault::Status {
            path_contains: "POST /v2/faulty/".into(),
            status: 503,
            retry_after: None,
            count: 2,
        },
        Fault::Status {
            path_contains: "PATCH /v2/faulty/".into(),
            status: 429,
            retry_after: Some(1),
            count: 1,
        },
        Fault::BreakUpload {
            path_contains: "PATCH /v2/faulty/".into(),
            body_bytes: 100_000,
            count: 2,
        },
        Fault::Status {
            path_contains: "PATCH /v2/faulty/".into(),
            status: 413,
            retry_after: None,
            count: 1,
        },
        Fault::BreakUpload {
            path_contains: "PUT /v2/faulty/blobs/".into(),
            body_bytes: 50_000,
            count: 1,
        },
        Fault::Status {
            path_contains: "PUT /v2/faulty/manifests/".into(),
            status: 500,
            retry_after: None,
            count: 1,
        },
    ];
    let proxy = FaultProxy::start(&registry.host, faults);
    let client = RegistryClient::new(ClientOptions { upload_chunk_size: 256 * 1024, ..options() });
    let target = at(&proxy.host, "faulty:1");
    image.push(&client, std::slice::from_ref(&target), &MountSources::new());
    image.check_pushed(&RegistryClient::new(options()), &at(&registry.host, "faulty:1"));
    let raw = common::skopeo::inspect_raw(&format!("{}/faulty:1", registry.host), None);
    assert_eq!(raw, image.manifest);
    let requests = proxy.requests();
    assert!(count(&requests, "PATCH /v2/faulty/") >= 5, "the big layer went in chunks");
    assert!(
        count(&requests, "GET /v2/faulty/blobs/uploads/") >= 1,
        "a broken chunk asks where to go on"
    );
}

#[test]
fn registry_quirks_are_understood() {
    if !ready() {
        return;
    }
    // Relative Location headers, 201 where the spec says 202, no Docker-Content-Digest,
    // and a minimum chunk size.
    let registry = TestRegistry::start(Options { relative_urls: true, ..Options::default() });
    let quirks = vec![
        Fault::Rewrite {
            path_contains: "POST /v2/".into(),
            status: Some((202, 201)),
            remove_headers: vec![],
            add_headers: vec![("OCI-Chunk-Min-Length".into(), "300000".into())],
        },
        Fault::Rewrite {
            path_contains: "PATCH /v2/".into(),
            status: Some((202, 201)),
            remove_headers: vec!["Range".into()],
            add_headers: vec![],
        },
        Fault::Rewrite {
            path_contains: "PUT /v2/".into(),
            status: None,
            remove_headers: vec!["Docker-Content-Digest".into()],
            add_headers: vec![],
        },
    ];
    let proxy = FaultProxy::start(&registry.host, quirks);
    let image = TestImage::new(&[&noise(700_000, 3), b"tiny"]);
    let client = RegistryClient::new(ClientOptions { upload_chunk_size: 128 * 1024, ..options() });
    image.push(
        &client,
        &[at(&proxy.host, "quirky:a"), at(&proxy.host, "quirky:b")],
        &MountSources::new(),
    );
    for tag in ["a", "b"] {
        let raw = common::skopeo::inspect_raw(&format!("{}/quirky:{tag}", registry.host), None);
        assert_eq!(sha256(&raw), image.digest().to_string());
    }
    image.check_pushed(&RegistryClient::new(options()), &at(&registry.host, "quirky:a"));
    let patches: Vec<usize> = proxy
        .requests()
        .iter()
        .filter(|head| head.starts_with("PATCH"))
        .map(|head| {
            let line = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-length:"))
                .unwrap();
            line[15..].trim().parse().unwrap()
        })
        .collect();
    assert_eq!(patches, [300_000, 300_000, 100_000], "chunks of the registry's minimum");
}

#[test]
fn mounts_from_other_repositories_with_fallback() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::shared();
    let proxy = FaultProxy::start(&registry.host, vec![]);
    let client = RegistryClient::new(options());
    let base = TestImage::new(&[&noise(50_000, 4), &noise(60_000, 5)]);
    base.push(&client, &[at(&proxy.host, "mount-base:1")], &MountSources::new());

    // The derived image shares the base's layers and adds one the base does not have,
    // which the hints claim it has: that mount is declined (202) and uploaded instead.
    let extra = noise(70_000, 6);
    let derived = TestImage::new(&[&base.layers[0].1, &base.layers[1].1, &extra]);
    let mut hints = derived.mounts_from(&at(&proxy.host, "mount-base:1"));
    hints.entry(derived.config.0.digest.clone()).or_default();
    let before = proxy.requests().len();
    let outcomes = derived.push(
        &client,
        &[at(&proxy.host, "mount-derived:1"), at(&proxy.host, "mount-copy:1")],
        &hints,
    );
    assert_eq!(
        outcomes,
        [
            BlobOutcome::Mounted { from: "mount-base".into() },
            BlobOutcome::Mounted { from: "mount-base".into() },
            BlobOutcome::Uploaded
        ]
    );
    let requests = &proxy.requests()[before..];
    assert_eq!(count(requests, "POST /v2/mount-derived/blobs/uploads/?mount="), 3);
    assert_eq!(
        count(requests, "PUT /v2/mount-derived/blobs/uploads/"),
        2,
        "the extra layer and the config"
    );
    // The second repository of the same push mounts everything from the first.
    assert_eq!(count(requests, "POST /v2/mount-copy/blobs/uploads/?mount="), 4);
    assert_eq!(count(requests, "PUT /v2/mount-copy/blobs/uploads/"), 0);
    derived.check_pushed(&client, &at(&registry.host, "mount-copy:1"));
}

#[test]
fn a_failed_push_leaves_no_tag() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::shared();
    let image = TestImage::new(&[&noise(10_000, 7)]);
    let config = image.config.0.digest.to_string();
    let faults = vec![Fault::Status {
        path_contains: format!("digest={}", config.replace(':', "%3A")),
        status: 503,
        retry_after: None,
        count: 100,
    }];
    let proxy = FaultProxy::start(&registry.host, faults);
    let target = at(&proxy.host, "never:1");
    let err = image
        .try_push(&RegistryClient::new(options()), &[target], &MountSources::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry {} returned HTTP 503 for upload of blob {config} to {}/never: unavailable: injected by the test proxy",
            proxy.host, proxy.host
        )
    );
    assert_eq!(count(&proxy.requests(), "PUT /v2/never/manifests/"), 0);
    let err =
        RegistryClient::new(options()).get_manifest(&at(&registry.host, "never:1")).unwrap_err();
    assert!(err.to_string().starts_with("manifest for"), "{err}");

    // A reference pinned to another digest is refused before anything is sent.
    let other = Digest::sha256_of(b"another manifest");
    let pinned = at(&proxy.host, &format!("never@{other}"));
    let err = image
        .try_push(&RegistryClient::new(options()), &[pinned], &MountSources::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot push {}/never@{other}: it names digest {other}, but the image's manifest is {}",
            proxy.host,
            image.digest()
        )
    );
}
