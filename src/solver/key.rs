//! Cache keys: a sha256 over a canonical, type-tagged encoding of exactly what defines a
//! step's result.
//!
//! Encoding: every value is written as a one-byte type tag followed by its bytes, strings and
//! lists length-prefixed (u64 little endian), so no two different values encode alike (`["ab"]`
//! vs `["a","b"]`, `None` vs `Some("")`). Each key starts with [`KEY_VERSION`]; changing what a
//! key covers means bumping it, so old records are simply never found again.
//!
//! What a key covers, per op (and nothing else — descriptions, spans, progress names, host
//! paths and proxy variables stay out; a test proves it):
//! - image: the manifest digest the reference resolved to and the platform;
//! - run: the parent's key, argv, environment, user, workdir, network, security mode, mounts
//!   (type, target, source key and path, cache id and sharing, mode/uid/gid, tmpfs size, secret
//!   and ssh ids — never cache contents or secret values), devices and heredoc files;
//! - copy: the destination parent's key, the digest of the selected source files (content,
//!   type, mode, owner, link target and path; never mtime), and every flag;
//! - mkdir: the parent's key, the path, mode and user.
//!
//! A `COPY --link` whose owner needs no lookup in the rootfs makes a layer that does not
//! depend on the rootfs below: its key takes [`scratch_key`] for the parent, so the layer is
//! reused whatever comes before it (BuildKit's `--link` cache), and the step's result is
//! keyed by [`link_key`] of the parent's key and the layer's.

use kiln_frontend::graph::{AddOptions, CopyOp, InlineFileMount, RunMount, RunOp};
use kiln_frontend::instructions::{NetworkMode, SecurityMode};
use kiln_frontend::platform::Platform;
use sha2::{Digest as _, Sha256};

/// Bumped whenever the meaning of a key changes.
pub const KEY_VERSION: &str = "kiln-cache-key-v1";

pub use kiln_cache::CacheKey;

/// Builds one key from tagged values.
pub struct KeyHasher {
    hasher: Sha256,
}

impl KeyHasher {
    pub fn new(kind: &str) -> Self {
        let mut hasher = KeyHasher { hasher: Sha256::new() };
        hasher.str(KEY_VERSION);
        hasher.str(kind);
        hasher
    }

    fn tag(&mut self, tag: u8) {
        self.hasher.update([tag]);
    }

    fn len(&mut self, len: usize) {
        self.hasher.update((len as u64).to_le_bytes());
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.tag(b'b');
        self.len(bytes.len());
        self.hasher.update(bytes);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.tag(b's');
        self.len(s.len());
        self.hasher.update(s.as_bytes());
        self
    }

    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.tag(b'u');
        self.hasher.update(n.to_le_bytes());
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.tag(if b { b'T' } else { b'F' });
        self
    }

    pub fn opt_str(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.tag(b'N'),
            Some(s) => {
                self.tag(b'S');
                self.str(s);
            }
        }
        self
    }

    pub fn opt_u64(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            None => self.tag(b'N'),
            Some(n) => {
                self.tag(b'S');
                self.u64(n);
            }
        }
        self
    }

    pub fn strs<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.tag(b'l');
        self.len(items.len());
        for item in items {
            self.str(item.as_ref());
        }
        self
    }

    pub fn key(&mut self, key: &CacheKey) -> &mut Self {
        self.tag(b'k');
        self.str(key.as_str());
        self
    }

    pub fn finish(self) -> CacheKey {
        CacheKey::new(hex(&self.hasher.finalize())).expect("a sha256 is 64 hex digits")
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn platform(h: &mut KeyHasher, p: &Platform) {
    h.str(&p.os).str(&p.architecture).opt_str(p.variant.as_deref());
}

/// The key of an image source: what it resolved to, not how it was written.
pub fn image_key(manifest_digest: &str, p: &Platform) -> CacheKey {
    let mut h = KeyHasher::new("image");
    h.str(manifest_digest);
    platform(&mut h, p);
    h.finish()
}

pub fn scratch_key() -> CacheKey {
    KeyHasher::new("scratch").finish()
}

/// The key of a RUN. `mount_sources[i]` is the key of mount `i`'s source step, if it has one.
pub fn run_key(op: &RunOp, parent: &CacheKey, mount_sources: &[Option<CacheKey>]) -> CacheKey {
    let mut h = KeyHasher::new("run");
    h.key(parent).strs(&op.args).strs(&op.env).opt_str(op.user.as_deref()).str(&op.workdir);
    h.str(match op.network {
        NetworkMode::Default => "default",
        NetworkMode::None => "none",
        NetworkMode::Host => "host",
    });
    h.str(match op.security {
        SecurityMode::Sandbox => "sandbox",
        SecurityMode::Insecure => "insecure",
    });
    h.u64(op.mounts.len() as u64);
    for (mount, source) in op.mounts.iter().zip(mount_sources) {
        run_mount(&mut h, mount, source.as_ref());
    }
    h.u64(op.devices.len() as u64);
    for device in &op.devices {
        h.str(&device.name).bool(device.required);
    }
    h.u64(op.inline_files.len() as u64);
    for InlineFileMount { path, data, mode } in &op.inline_files {
        h.str(path).str(data).u64(u64::from(*mode));
    }
    h.finish()
}

fn run_mount(h: &mut KeyHasher, m: &RunMount, source: Option<&CacheKey>) {
    h.str(m.kind.as_str()).str(&m.target);
    match source {
        Some(key) => h.key(key),
        None => h.opt_str(None),
    };
    h.str(&m.source_path).bool(m.readonly).opt_str(m.id.as_deref());
    h.opt_str(m.sharing.map(|s| match s {
        kiln_frontend::instructions::Sharing::Shared => "shared",
        kiln_frontend::instructions::Sharing::Private => "private",
        kiln_frontend::instructions::Sharing::Locked => "locked",
    }));
    h.opt_u64(m.mode.map(u64::from)).opt_u64(m.uid.map(u64::from)).opt_u64(m.gid.map(u64::from));
    h.opt_u64(m.size_limit).bool(m.required).opt_str(m.env.as_deref());
}

/// The key of a COPY/ADD: `sources_digest` covers the selected files (see module doc), or
/// the URL's content for ADD of a URL.
pub fn copy_key(op: &CopyOp, parent: &CacheKey, sources_digest: &str) -> CacheKey {
    let mut h = KeyHasher::new("copy");
    h.key(parent).str(sources_digest).strs(&op.sources);
    h.u64(op.inline_sources.len() as u64);
    for source in &op.inline_sources {
        h.str(&source.name).str(&source.data);
    }
    h.str(&op.dest).opt_str(op.chown.as_deref()).opt_str(op.chmod.as_deref());
    h.bool(op.link).bool(op.parents).strs(&op.exclude);
    match &op.add {
        None => {
            h.opt_str(None);
        }
        Some(AddOptions { unpack, checksum, keep_git_dir }) => {
            h.str("add");
            h.opt_str(unpack.map(|u| if u { "true" } else { "false" }));
            h.opt_str(checksum.as_deref());
            h.opt_str(keep_git_dir.map(|k| if k { "true" } else { "false" }));
        }
    }
    h.finish()
}

pub fn mkdir_key(parent: &CacheKey, path: &str, mode: u32, user: Option<&str>) -> CacheKey {
    let mut h = KeyHasher::new("mkdir");
    h.key(parent).str(path).u64(u64::from(mode)).opt_str(user);
    h.finish()
}

/// The key of a rootfs made of `parent` with an independently made layer keyed `layer` on top.
pub fn link_key(parent: &CacheKey, layer: &CacheKey) -> CacheKey {
    let mut h = KeyHasher::new("link");
    h.key(parent).key(layer);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_frontend::graph::StepId;

    fn run(args: &[&str]) -> RunOp {
        RunOp {
            rootfs: StepId(0),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            user: None,
            workdir: "/".into(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            mounts: vec![],
            devices: vec![],
            inline_files: vec![],
            proxy_env: vec![],
        }
    }

    #[test]
    fn encoding_is_unambiguous() {
        let parent = scratch_key();
        assert_ne!(run_key(&run(&["ab"]), &parent, &[]), run_key(&run(&["a", "b"]), &parent, &[]));
        let mut none = KeyHasher::new("x");
        none.opt_str(None);
        let mut empty = KeyHasher::new("x");
        empty.opt_str(Some(""));
        assert_ne!(none.finish(), empty.finish());
    }

    #[test]
    fn descriptive_data_stays_out() {
        let parent = scratch_key();
        let mut with_proxy = run(&["make"]);
        with_proxy.proxy_env = vec!["HTTP_PROXY=http://proxy:3128".into()];
        with_proxy.rootfs = StepId(7);
        assert_eq!(run_key(&run(&["make"]), &parent, &[]), run_key(&with_proxy, &parent, &[]));
    }

    #[test]
    fn defining_data_goes_in() {
        let parent = scratch_key();
        let base = run_key(&run(&["make"]), &parent, &[]);
        let mut other_user = run(&["make"]);
        other_user.user = Some("app".into());
        assert_ne!(base, run_key(&other_user, &parent, &[]));
        let mut other_net = run(&["make"]);
        other_net.network = NetworkMode::None;
        assert_ne!(base, run_key(&other_net, &parent, &[]));
        assert_ne!(base, run_key(&run(&["make"]), &image_key("sha256:aa", &Platform::host()), &[]));
    }

    #[test]
    fn stable_across_versions_of_this_code() {
        // Changing the encoding must bump KEY_VERSION; this pins the current one.
        assert_eq!(scratch_key().as_str(), {
            let mut h = Sha256::new();
            for (tag, s) in [(b's', KEY_VERSION), (b's', "scratch")] {
                h.update([tag]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            hex(&h.finalize())
        });
    }
}
