//! `RUN --mount=type=ssh`: the agent socket a RUN sees.
//!
//! The agent given with `--ssh` is never mounted into the sandbox itself. kiln listens on a
//! socket of its own, in a private temporary directory, owned and moded as the mount asks
//! (BuildKit's defaults: uid 0, gid 0, mode 0600), and relays every connection to the agent
//! for as long as the RUN lasts: so `uid=`/`gid=`/`mode=` work without touching the user's
//! socket, as BuildKit's forwarding does. Bytes are relayed as they are; nothing is logged.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A listening socket relaying to an agent; stops listening when dropped.
#[derive(Debug)]
pub struct AgentForward {
    /// The socket to mount into the sandbox.
    pub socket: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Starts relaying connections on a new socket to the agent at `agent`.
pub fn forward(agent: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<AgentForward> {
    let dir = tempfile::Builder::new().prefix("kiln-ssh-").tempdir()?;
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket)?;
    // Rootless, ids other than our own cannot be given away: the socket stays ours, which
    // the sandbox sees as its root.
    let _ = std::os::unix::fs::chown(&socket, Some(uid), Some(gid));
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (agent, halt) = (agent.to_path_buf(), stop.clone());
    let accept = std::thread::spawn(move || {
        for client in listener.incoming() {
            if halt.load(Ordering::SeqCst) {
                break;
            }
            let Ok(client) = client else { continue };
            // An agent that is gone closes this client; the command sees the failure.
            if let Ok(upstream) = UnixStream::connect(&agent) {
                relay(client, upstream);
            }
        }
    });
    Ok(AgentForward { socket, stop, accept: Some(accept), _dir: dir })
}

/// Copies bytes both ways until either side closes, on two threads.
fn relay(client: UnixStream, upstream: UnixStream) {
    let pairs = [(client.try_clone(), upstream.try_clone()), (Ok(upstream), Ok(client))];
    for (from, to) in pairs {
        if let (Ok(mut from), Ok(mut to)) = (from, to) {
            std::thread::spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        }
    }
}

impl Drop for AgentForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn relays_both_ways_with_the_socket_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut stream, _) = agent.accept().unwrap();
            let mut request = [0u8; 5];
            stream.read_exact(&mut request).unwrap();
            stream.write_all(b"reply").unwrap();
            request
        });
        let forward = forward(&agent_path, rustix::process::getuid().as_raw(), 0, 0o741).unwrap();
        assert_eq!(std::fs::metadata(&forward.socket).unwrap().mode() & 0o7777, 0o741);
        let mut client = UnixStream::connect(&forward.socket).unwrap();
        client.write_all(b"hello").unwrap();
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"reply");
        assert_eq!(&echo.join().unwrap(), b"hello");
        let socket = forward.socket.clone();
        drop(forward);
        assert!(!socket.exists(), "the socket's directory goes with the forward");
    }
}
