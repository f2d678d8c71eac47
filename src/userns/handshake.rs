//! The two messages of the set-up handshake between kiln (the parent, outside) and its
//! re-executed copy (the child, inside the new user namespace), on a private socket pair.
//!
//! ```text
//! parent                                   child (first thing in main, single-threaded)
//!                                          unshare(CLONE_NEWUSER | CLONE_NEWNS)
//!   ◀──────────────── Report: unshared | failed(errno)   (5 bytes: tag, errno LE)
//! newuidmap/newgidmap CHILD_PID ...
//!   ── MAPPED (1 byte) ─────────────────▶ setresuid/setresgid(0), make / rprivate, continue
//! ```
//! The parent closing the socket instead of sending `MAPPED` means "give up": it reports
//! the reason itself.

/// The child's report, always [`Report::LEN`] bytes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The child is in its new user and mount namespaces, waiting for its id maps.
    Unshared,
    /// `unshare` failed with this errno.
    Failed(i32),
}

/// The parent's go-ahead: the maps are written.
pub const MAPPED: u8 = b'M';

impl Report {
    pub const LEN: usize = 5;

    pub fn encode(self) -> [u8; Report::LEN] {
        let (tag, errno) = match self {
            Report::Unshared => (b'U', 0),
            Report::Failed(errno) => (b'E', errno),
        };
        let mut bytes = [tag, 0, 0, 0, 0];
        bytes[1..].copy_from_slice(&errno.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: [u8; Report::LEN]) -> Option<Report> {
        let errno = i32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        match bytes[0] {
            b'U' => Some(Report::Unshared),
            b'E' => Some(Report::Failed(errno)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_garbage_is_refused() {
        for report in [Report::Unshared, Report::Failed(libc::EPERM), Report::Failed(-1)] {
            assert_eq!(Report::decode(report.encode()), Some(report));
        }
        assert_eq!(Report::Failed(1).encode(), [b'E', 1, 0, 0, 0]);
        assert_eq!(Report::decode([b'X', 0, 0, 0, 0]), None);
    }
}
