//! End-to-end pulls from a real registry (Debian's `docker-registry`), with images pushed by
//! `skopeo` from hand-written OCI layouts. Skipped with a message when the tools are
//! missing, unless `KILN_E2E=1`.

mod common;

use base64::Engine;
use common::busybox::{self, Pushed};
use common::oci::{self, LayerBuilder};
use common::proxy::{Fault, FaultProxy};
use common::registry::TestRegistry;
use common::skopeo::CopyOptions;
use common::tools;
use kiln::registry::credentials::ProcessHelperRunner;
use kiln::registry::manifest::{
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use kiln::registry::{
    ClientOptions, CredentialStore, Descriptor, Digest, InsecureRegistries, Reference,
    RegistryClient, RetryPolicy, SystemTls,
};
use kiln_frontend::platform::Platform;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[track_caller]
fn ready() -> bool {
    tools::available(tools::REGISTRY_TOOLS)
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry: fast_retry(),
        timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(options())
}

fn reference(text: &str) -> Reference {
    Reference::parse(text).unwrap()
}

fn digest(text: &str) -> Digest {
    text.parse().unwrap()
}

fn platform(text: &str) -> Platform {
    Platform::parse(text).unwrap()
}

fn host_linux() -> Platform {
    Platform::new("linux", busybox::host_architecture(), None)
}

fn fetch_to_vec(
    client: &RegistryClient,
    reference: &Reference,
    descriptor: &Descriptor,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    client.fetch_blob(reference, descriptor, &mut bytes, &|_| {}).unwrap();
    bytes
}

#[test]
fn pulls_oci_image_by_tag() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = busybox::push_busybox(&registry, "busybox", "latest", &CopyOptions::default());
    let built = &pushed.images[0];
    let client = client();
    let reference = reference(&format!("{}/busybox", registry.host));
    let image = client.resolve_image(&reference, &host_linux()).unwrap();

    assert_eq!(image.manifest.media_type, OCI_MANIFEST);
    assert_eq!(image.manifest.bytes, built.manifest, "the manifest bytes are kept exactly");
    assert_eq!(image.digest().to_string(), pushed.digest);
    assert_eq!(image.manifest.digest.to_string(), built.manifest_digest);
    assert!(image.indexes.is_empty());
    assert_eq!(image.config.bytes, built.config);
    assert_eq!(image.config.digest.to_string(), built.config_digest);
    assert_eq!(image.image.config.media_type, OCI_CONFIG);
    let config = image.config.config.config.as_ref().unwrap();
    assert_eq!(config.cmd.as_deref().unwrap(), ["sh"]);
    assert_eq!(
        config.env.as_deref().unwrap(),
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    assert_eq!(config.labels.as_ref().unwrap()["org.kiln.test"], "busybox");
    assert_eq!(image.config.config.rootfs.diff_ids, vec![digest(&built.layers[0].diff_id)]);

    let layer = &image.layers()[0];
    assert_eq!(layer.digest.to_string(), built.layers[0].digest);
    let seen = Mutex::new(Vec::new());
    let mut bytes = Vec::new();
    client
        .fetch_blob(&reference, layer, &mut bytes, &|p| {
            seen.lock().unwrap().push((p.done, p.total))
        })
        .unwrap();
    assert_eq!(bytes, built.layers[0].gzip);
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.first(), Some(&(0, layer.size)));
    assert_eq!(seen.last(), Some(&(layer.size, layer.size)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "progress only grows");
}

#[test]
fn pulls_by_digest_and_rejects_tampered_bytes() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = busybox::push_busybox(&registry, "busybox", "v1", &CopyOptions::default());
    let built = &pushed.images[0];
    let client = client();
    let by_digest = reference(&format!("{}/busybox@{}", registry.host, pushed.digest));
    let manifest = client.get_manifest(&by_digest).unwrap();
    assert_eq!(manifest.digest.to_string(), pushed.digest);
    assert_eq!(Digest::sha256_of(&manifest.bytes).to_string(), pushed.digest);
    assert_eq!(manifest.bytes, common::skopeo::inspect_raw(&pushed.reference, None));
    let copied = tempfile::tempdir().unwrap();
    common::skopeo::copy_to_layout(&pushed.reference, copied.path(), "back");
    let layer_file = copied
        .path()
        .join("blobs/sha256")
        .join(built.layers[0].digest.trim_start_matches("sha256:"));
    assert_eq!(std::fs::read(layer_file).unwrap(), built.layers[0].gzip);

    // a digest nothing has
    let missing = Digest::sha256_of(b"nothing");
    let err = client
        .get_manifest(&reference(&format!("{}/busybox@{missing}", registry.host)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "manifest for {}/busybox@{missing} not found: manifest unknown: manifest unknown",
            registry.host
        )
    );

    // bytes that do not hash to the digest asked for
    let mut tampered = built.manifest.clone();
    tampered.push(b' ');
    let proxy = FaultProxy::start(
        &registry.host,
        vec![
            Fault::Respond {
                path_contains: format!("/manifests/{}", pushed.digest),
                status: 200,
                headers: vec![("Content-Type".into(), OCI_MANIFEST.into())],
                body: tampered.clone(),
            },
            Fault::Respond {
                path_contains: "/manifests/v1".into(),
                status: 200,
                headers: vec![
                    ("Content-Type".into(), OCI_MANIFEST.into()),
                    ("Docker-Content-Digest".into(), pushed.digest.clone()),
                ],
                body: tampered.clone(),
            },
        ],
    );
    let tampered_digest = oci::sha256(&tampered);
    let err = client
        .get_manifest(&reference(&format!("{}/busybox@{}", proxy.host, pushed.digest)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "digest mismatch for manifest {}/busybox@{}: expected {}, got {tampered_digest}",
            proxy.host, pushed.digest, pushed.digest
        )
    );
    let err = client.get_manifest(&reference(&format!("{}/busybox:v1", proxy.host))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "digest mismatch for manifest {}/busybox:v1 (Docker-Content-Digest header): expected {}, got {tampered_digest}",
            proxy.host, pushed.digest
        )
    );

    // a blob whose bytes were changed (same length)
    let layer = &built.layers[0];
    let mut bad_layer = layer.gzip.clone();
    let middle = bad_layer.len() / 2;
    bad_layer[middle] ^= 0xff;
    let proxy = FaultProxy::start(
        &registry.host,
        vec![Fault::Respond {
            path_contains: format!("/blobs/{}", layer.digest),
            status: 200,
            headers: vec![],
            body: bad_layer.clone(),
        }],
    );
    let via_proxy = reference(&format!("{}/busybox:v1", proxy.host));
    let descriptor = client.get_manifest(&via_proxy).map(|_| ()).and_then(|_| {
        let image = client.resolve_image(&via_proxy, &host_linux())?;
        Ok(image.layers()[0].clone())
    });
    let descriptor = descriptor.unwrap();
    let err = client.fetch_blob(&via_proxy, &descriptor, &mut Vec::new(), &|_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "digest mismatch for blob {} of {}/busybox: expected {}, got {}",
            layer.digest,
            proxy.host,
            layer.digest,
            oci::sha256(&bad_layer)
        )
    );
}

#[test]
fn pulls_docker_schema2_image() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = busybox::push_busybox(
        &registry,
        "schema2",
        "latest",
        &CopyOptions { format: Some("v2s2"), ..Default::default() },
    );
    let built = &pushed.images[0];
    let client = client();
    let reference = reference(&format!("{}/schema2:latest", registry.host));
    let image = client.resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(image.manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(image.digest().to_string(), pushed.digest);
    assert_eq!(image.image.config.media_type, DOCKER_CONFIG);
    assert_eq!(image.layers()[0].media_type, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    assert_eq!(image.config.config.rootfs.diff_ids, vec![digest(&built.layers[0].diff_id)]);
    assert_eq!(image.config.config.config.as_ref().unwrap().cmd.as_deref().unwrap(), ["sh"]);
    assert_eq!(fetch_to_vec(&client, &reference, &image.layers()[0]), built.layers[0].gzip);
}

fn push_three_platforms(registry: &TestRegistry, repository: &str, format: Option<&str>) -> Pushed {
    busybox::push_multi_platform(
        registry,
        repository,
        "latest",
        &[("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))],
        &CopyOptions { format, ..Default::default() },
    )
}

#[test]
fn selects_the_platform_from_an_index() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = push_three_platforms(&registry, "multi", None);
    assert_eq!(pushed.digest, pushed.layout_index.clone().unwrap());
    let client = client();
    let reference = reference(&format!("{}/multi", registry.host));

    let arm64 = client.resolve_image(&reference, &platform("linux/arm64")).unwrap();
    assert_eq!(arm64.indexes.len(), 1);
    assert_eq!(arm64.indexes[0].media_type, OCI_INDEX);
    assert_eq!(arm64.digest().to_string(), pushed.digest, "the reference resolves to the index");
    assert_eq!(arm64.manifest.digest.to_string(), pushed.images[1].manifest_digest);
    assert_eq!(arm64.config.config.architecture, "arm64");

    let arm = client.resolve_image(&reference, &platform("linux/arm")).unwrap();
    assert_eq!(
        arm.manifest.digest.to_string(),
        pushed.images[2].manifest_digest,
        "arm means arm/v7"
    );
    assert_eq!(arm.config.config.variant.as_deref(), Some("v7"));

    let amd64 = client.resolve_image(&reference, &platform("linux/amd64")).unwrap();
    assert_eq!(amd64.manifest.digest.to_string(), pushed.images[0].manifest_digest);

    let err = client.resolve_image(&reference, &platform("linux/s390x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no matching manifest for linux/s390x in the manifest list entries of {}/multi:latest (available: linux/amd64, linux/arm64, linux/arm/v7)",
            registry.host
        )
    );
}

#[test]
fn selects_the_platform_from_a_docker_manifest_list() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = push_three_platforms(&registry, "list", Some("v2s2"));
    let client = client();
    let reference = reference(&format!("{}/list:latest", registry.host));
    let image = client.resolve_image(&reference, &platform("linux/arm64/v8")).unwrap();
    assert_eq!(image.indexes[0].media_type, DOCKER_MANIFEST_LIST);
    assert_eq!(image.digest().to_string(), pushed.digest);
    assert_eq!(image.manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(image.config.config.architecture, "arm64");
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn client_with_files(
    files: Vec<PathBuf>,
    helper_path: Option<std::ffi::OsString>,
) -> RegistryClient {
    let helpers = Arc::new(ProcessHelperRunner { path: helper_path });
    RegistryClient::new(ClientOptions {
        credentials: CredentialStore::new(files, helpers),
        ..options()
    })
}

fn auth_config(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    serde_json::json!({"auths": {host: {"auth": auth}}}).to_string()
}

#[test]
fn basic_auth_with_docker_config_credentials() {
    if !ready() || !tools::available(&["htpasswd"]) {
        return;
    }
    let registry = TestRegistry::with_htpasswd("alice", "wonderland");
    let pushed = busybox::push_busybox(
        &registry,
        "private",
        "latest",
        &CopyOptions { creds: Some(("alice", "wonderland")), ..Default::default() },
    );
    let dir = tempfile::tempdir().unwrap();
    let reference = reference(&pushed.reference);

    let good =
        write_file(dir.path(), "good.json", &auth_config(&registry.host, "alice", "wonderland"));
    let image =
        client_with_files(vec![good], None).resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);

    let bad =
        write_file(dir.path(), "bad.json", &auth_config(&registry.host, "alice", "wrong-password"));
    let err = client_with_files(vec![bad.clone()], None)
        .resolve_image(&reference, &host_linux())
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(
        message,
        format!(
            "pull access denied for {}/private: unauthorized: authentication required (HTTP 401; the credentials for registry {} from {} were rejected)",
            registry.host,
            registry.host,
            bad.display()
        )
    );
    assert!(!message.contains("wrong-password"));

    let err = client().resolve_image(&reference, &host_linux()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull access denied for {}/private: unauthorized: authentication required (HTTP 401; no credentials configured for registry {})",
            registry.host, registry.host
        )
    );
}

#[test]
fn credentials_from_a_helper_program() {
    if !ready() || !tools::available(&["htpasswd"]) {
        return;
    }
    let registry = TestRegistry::with_htpasswd("helperuser", "helperpass");
    let pushed = busybox::push_busybox(
        &registry,
        "helped",
        "latest",
        &CopyOptions { creds: Some(("helperuser", "helperpass")), ..Default::default() },
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("calls.log");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\necho \"$server\" >> '{}'\nif [ \"$server\" = '{}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"helperuser\",\"Secret\":\"helperpass\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
        calls.display(),
        registry.host
    );
    let helper = write_file(&bin, "docker-credential-test", &script);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    if let Some(system) = std::env::var_os("PATH") {
        path.push(":");
        path.push(system);
    }
    let reference = reference(&pushed.reference);

    let store = write_file(dir.path(), "store.json", r#"{"credsStore":"test"}"#);
    let image = client_with_files(vec![store], Some(path.clone()))
        .resolve_image(&reference, &host_linux())
        .unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);

    let helpers = write_file(
        dir.path(),
        "helpers.json",
        &serde_json::json!({"credHelpers": {registry.host.clone(): "test"}}).to_string(),
    );
    let image = client_with_files(vec![helpers], Some(path.clone()))
        .resolve_image(&reference, &host_linux())
        .unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);
    let log = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(log, format!("{0}\n{0}\n", registry.host), "one helper call per client");

    // a helper that is not installed is a clear error
    let missing = write_file(dir.path(), "missing.json", r#"{"credsStore":"absent"}"#);
    let err = client_with_files(vec![missing], Some(path))
        .resolve_image(&reference, &host_linux())
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "cannot run credential helper docker-credential-absent for {}: ",
            registry.host
        )),
        "{err}"
    );
}

#[test]
fn tls_registry_needs_its_ca_or_an_insecure_listing() {
    if !ready() || !tools::available(&["openssl"]) {
        return;
    }
    let registry = TestRegistry::tls();
    let pushed = busybox::push_busybox(&registry, "secure", "latest", &CopyOptions::default());
    let reference = reference(&pushed.reference);

    let with_ca = RegistryClient::new(ClientOptions {
        tls: Arc::new(SystemTls::new(vec![registry.ca_file().unwrap()])),
        ..options()
    });
    let image = with_ca.resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);
    let layer = image.layers()[0].clone();
    assert_eq!(fetch_to_vec(&with_ca, &reference, &layer), pushed.images[0].layers[0].gzip);

    let err = client().resolve_image(&reference, &host_linux()).unwrap_err().to_string();
    let prefix = format!("cannot reach registry {0}: https://{0}/v2/: ", registry.host);
    assert!(err.starts_with(&prefix), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains(&format!("http://{}/v2/: HTTP 400, not a registry", registry.host)),
        "{err}"
    );
    assert!(err.ends_with(&format!("(put its CA certificate in ~/.config/kiln/certs.d/{0}/ca.crt or /etc/docker/certs.d/{0}/ca.crt, or give it with KILN_REGISTRY_CA_FILE, or allow it with --insecure-registry {0})", registry.host)), "{err}");

    let insecure = RegistryClient::new(ClientOptions {
        insecure: InsecureRegistries::new([registry.host.as_str()]).unwrap(),
        ..options()
    });
    let image = insecure.resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);
}

#[test]
fn unreachable_registry_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let host = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let err =
        client().get_manifest(&reference(&format!("{host}/x:latest"))).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        err.starts_with(&format!("cannot reach registry {host}: https://{host}/v2/: ")),
        "{err}"
    );
    assert!(err.contains(&format!("; http://{host}/v2/: ")), "{err}");
    assert!(err.contains("Connection refused"), "{err}");

    // a server that accepts connections and never answers: bounded by the timeout
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    // holds both connections (https probe, http fallback) unanswered, then ends by itself
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(2).collect();
        std::thread::sleep(Duration::from_secs(8));
        drop(held);
    });
    let impatient = RegistryClient::new(ClientOptions {
        timeout: Duration::from_millis(500),
        retry: RetryPolicy::none(),
        ..ClientOptions::default()
    });
    let started = Instant::now();
    let err = impatient.get_manifest(&reference(&format!("{host}/x"))).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    assert!(
        err.starts_with(&format!("cannot reach registry {host}: https://{host}/v2/: ")),
        "{err}"
    );
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn retries_server_errors_and_rate_limits() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = busybox::push_busybox(&registry, "flaky", "latest", &CopyOptions::default());

    // 503 twice on the manifest, then the real answer
    let proxy = FaultProxy::start(
        &registry.host,
        vec![Fault::Status {
            path_contains: "/manifests/".into(),
            status: 503,
            retry_after: None,
            count: 2,
        }],
    );
    let image = client()
        .resolve_image(&reference(&format!("{}/flaky", proxy.host)), &host_linux())
        .unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);
    let manifest_requests = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v2/flaky/manifests/latest "))
        .count();
    assert_eq!(manifest_requests, 3);

    // 429 with Retry-After: 1 is waited out
    let proxy = FaultProxy::start(
        &registry.host,
        vec![Fault::Status {
            path_contains: "/manifests/".into(),
            status: 429,
            retry_after: Some(1),
            count: 1,
        }],
    );
    let started = Instant::now();
    client().get_manifest(&reference(&format!("{}/flaky", proxy.host))).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was not honoured");

    // a registry that keeps failing: bounded attempts, then its words
    let proxy = FaultProxy::start(
        &registry.host,
        vec![Fault::Status {
            path_contains: "/manifests/".into(),
            status: 503,
            retry_after: None,
            count: 100,
        }],
    );
    let err =
        client().get_manifest(&reference(&format!("{}/flaky:latest", proxy.host))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry {0} returned HTTP 503 for manifest {0}/flaky:latest: unavailable: injected by the test proxy",
            proxy.host
        )
    );
    let attempts = proxy.requests().iter().filter(|r| r.contains("/manifests/")).count();
    assert_eq!(attempts, fast_retry().max_attempts as usize);

    // the ping is retried too
    let proxy = FaultProxy::start(
        &registry.host,
        vec![Fault::Status {
            path_contains: "/v2/".into(),
            status: 502,
            retry_after: None,
            count: 2,
        }],
    );
    let image = client()
        .resolve_image(&reference(&format!("{}/flaky", proxy.host)), &host_linux())
        .unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);
}

#[test]
fn resumes_a_broken_blob_download_with_range() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let pushed = busybox::push_busybox(&registry, "resume", "latest", &CopyOptions::default());
    let layer = &pushed.images[0].layers[0];
    assert!(layer.gzip.len() > 200_000, "the busybox layer is big enough to cut");
    let proxy = FaultProxy::start(
        &registry.host,
        vec![Fault::Truncate {
            path_contains: format!("/blobs/{}", layer.digest),
            body_bytes: 100_000,
            count: 1,
        }],
    );
    let client = client();
    let reference = reference(&format!("{}/resume", proxy.host));
    let image = client.resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(fetch_to_vec(&client, &reference, &image.layers()[0]), layer.gzip);
    let blob_requests: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains(&format!("/blobs/{}", layer.digest)))
        .collect();
    assert_eq!(blob_requests.len(), 2, "{blob_requests:?}");
    assert!(!blob_requests[0].to_ascii_lowercase().contains("range:"));
    assert!(
        blob_requests[1].to_ascii_lowercase().contains("\r\nrange: bytes=100000-"),
        "{}",
        blob_requests[1]
    );

    // a registry that ignores Range sends everything again: the part already written is
    // skipped, and the sink still gets each byte once
    let proxy = FaultProxy::start(
        &registry.host,
        vec![
            Fault::Truncate {
                path_contains: format!("/blobs/{}", layer.digest),
                body_bytes: 150_000,
                count: 1,
            },
            Fault::IgnoreRange,
        ],
    );
    let second = Reference::parse(&format!("{}/resume", proxy.host)).unwrap();
    let progress = Mutex::new(Vec::new());
    let mut bytes = Vec::new();
    client
        .fetch_blob(&second, &image.layers()[0], &mut bytes, &|p| {
            progress.lock().unwrap().push(p.done)
        })
        .unwrap();
    assert_eq!(bytes, layer.gzip);
    let blob_requests: Vec<String> =
        proxy.requests().into_iter().filter(|r| r.contains("/blobs/")).collect();
    assert_eq!(blob_requests.len(), 2);
    assert!(
        blob_requests[1].to_ascii_lowercase().contains("\r\nrange: bytes=150000-"),
        "kiln asked for the rest"
    );
    let progress = progress.into_inner().unwrap();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress never goes back");
    assert_eq!(progress.last().copied(), Some(layer.gzip.len() as u64));
}

#[test]
fn downloads_layers_in_parallel_with_progress() {
    if !ready() {
        return;
    }
    let registry = TestRegistry::plain();
    let mut spec = busybox::busybox_spec(busybox::host_architecture(), None);
    for n in 0..4u8 {
        let mut layer = LayerBuilder::new();
        let content: Vec<u8> = (0..50_000u32).map(|i| (i as u8).wrapping_mul(n + 3)).collect();
        layer.dir("data", 0o755).file(&format!("data/file{n}"), 0o644, &content);
        spec.layers.push(layer.finish());
    }
    let pushed = busybox::push_image(&registry, "layers", "latest", &spec, &CopyOptions::default());
    let client = client();
    let reference = reference(&pushed.reference);
    let image = client.resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(image.layers().len(), 5);

    let finished: Mutex<HashMap<String, Vec<u8>>> = Mutex::new(HashMap::new());
    let progress: Mutex<HashMap<String, (u64, u64)>> = Mutex::new(HashMap::new());
    client
        .fetch_blobs(
            &reference,
            image.layers(),
            |_| Ok(Vec::new()),
            |descriptor, bytes| {
                finished.lock().unwrap().insert(descriptor.digest.to_string(), bytes);
                Ok(())
            },
            &|p| {
                progress.lock().unwrap().insert(p.descriptor.digest.to_string(), (p.done, p.total));
            },
        )
        .unwrap();
    let finished = finished.into_inner().unwrap();
    let progress = progress.into_inner().unwrap();
    for layer in &pushed.images[0].layers {
        assert_eq!(finished[&layer.digest], layer.gzip);
        let size = layer.gzip.len() as u64;
        assert_eq!(progress[&layer.digest], (size, size));
    }

    assert!(client.blob_exists(&reference, &image.layers()[3].digest).unwrap());
    assert!(!client.blob_exists(&reference, &Digest::sha256_of(b"absent")).unwrap());

    // one missing blob fails the whole download with a clear error
    let mut wrong = image.layers().to_vec();
    let missing = Digest::sha256_of(b"no such blob");
    wrong[2].digest = missing.clone();
    let err = client
        .fetch_blobs(&reference, &wrong, |_| Ok(Vec::new()), |_, _| Ok(()), &|_| {})
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {missing} not found in {}/layers: blob unknown: blob unknown to registry",
            registry.host
        )
    );
}

#[test]
fn bearer_token_flow_with_password_identity_token_and_anonymous() {
    use common::registry::Options;
    use common::token_server::{SERVICE, TokenServer};
    if !ready() || !tools::available(&["openssl"]) {
        return;
    }
    let tokens = TokenServer::start("bob", "builder", "refresh-123");
    let registry = TestRegistry::start(Options {
        auth_config: Some(tokens.registry_auth_config()),
        ..Options::default()
    });
    let pushed = busybox::push_busybox(
        &registry,
        "tokened",
        "latest",
        &CopyOptions { creds: Some(("bob", "builder")), ..Default::default() },
    );
    let reference = reference(&pushed.reference);
    let dir = tempfile::tempdir().unwrap();

    // username and password: one token (GET with Basic auth) serves manifest, config and layer
    let before = tokens.requests().len();
    let good = write_file(dir.path(), "good.json", &auth_config(&registry.host, "bob", "builder"));
    let with_password = client_with_files(vec![good], None);
    let image = with_password.resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(
        fetch_to_vec(&with_password, &reference, &image.layers()[0]),
        pushed.images[0].layers[0].gzip
    );
    let asked: Vec<_> = tokens.requests()[before..].to_vec();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].method, "GET");
    assert_eq!(asked[0].user.as_deref(), Some("bob"));
    assert_eq!(asked[0].params["scope"], ["repository:tokened:pull"]);
    assert_eq!(asked[0].params["service"], [SERVICE]);
    assert_eq!(asked[0].params["account"], ["bob"]);

    // an identity token is exchanged with an OAuth2 refresh_token POST
    let before = tokens.requests().len();
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:");
    let config = serde_json::json!({"auths": {registry.host.clone(): {"auth": auth, "identitytoken": "refresh-123"}}});
    let identity = write_file(dir.path(), "identity.json", &config.to_string());
    let image =
        client_with_files(vec![identity], None).resolve_image(&reference, &host_linux()).unwrap();
    assert_eq!(image.digest().to_string(), pushed.digest);
    let asked: Vec<_> = tokens.requests()[before..].to_vec();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].method, "POST");
    assert_eq!(asked[0].params["grant_type"], ["refresh_token"]);
    assert_eq!(asked[0].params["refresh_token"], ["refresh-123"]);
    assert_eq!(asked[0].params["client_id"], ["kiln"]);
    assert_eq!(asked[0].params["scope"], ["repository:tokened:pull"]);

    // a wrong password is refused by the token server
    let bad = write_file(dir.path(), "bad.json", &auth_config(&registry.host, "bob", "wrong"));
    let err = client_with_files(vec![bad.clone()], None)
        .resolve_image(&reference, &host_linux())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull access denied for {0}/tokened: incorrect username or password (HTTP 401; the credentials for registry {0} from {1} were rejected)",
            registry.host,
            bad.display()
        )
    );

    // an anonymous token grants nothing here
    let err = client().resolve_image(&reference, &host_linux()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "pull access denied for {0}/tokened: unauthorized: authentication required (HTTP 401; no credentials configured for registry {0})",
            registry.host
        )
    );
}
