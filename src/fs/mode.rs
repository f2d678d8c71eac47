//! `--chmod` values: an octal mode, or a symbolic one as `chmod(1)` reads it (`u+x,go=rX`).
//!
//! The rules are BuildKit's: an all-digit value is octal and must be at most `07777` (it then
//! replaces the permission and set-id/sticky bits of every copied file and directory, and is
//! the mode of directories the copy creates); anything else is parsed by BSD's `setmode(3)`
//! grammar with a umask of 0, as BuildKit's `dchapes-mode` does:
//!
//! ```text
//! mode   := clause ("," clause)*
//! clause := who* (op perm*)+          who := u | g | o | a     op := + | - | =
//! perm   := r | w | x | X | s | t | u | g | o
//! ```
//!
//! An empty `who` means all (`a`); `X` sets execute only for directories and for files
//! that had an execute bit before the change; `s` is ignored for `o` alone, as is `t`;
//! `u`/`g`/`o` as a perm copy that class's current bits. Clauses apply left to right.

use std::fmt;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const RWXU: u32 = 0o700;
const RWXG: u32 = 0o070;
const RWXO: u32 = 0o007;
/// setuid, setgid and every permission bit: what `a` and an empty `who` cover.
const STANDARD: u32 = S_ISUID | S_ISGID | RWXU | RWXG | RWXO;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    Octal(String),
    #[error("invalid chmod parameter: '{0}': invalid syntax")]
    Syntax(String),
}

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// `0o7777`-bounded octal: replaces the mode bits.
    Octal(u32),
    Symbolic(SymbolicMode),
}

/// A symbolic mode, as a list of bit operations applied in order.
#[derive(Clone, PartialEq, Eq)]
pub struct SymbolicMode {
    text: String,
    cmds: Vec<Cmd>,
}

impl fmt::Debug for SymbolicMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymbolicMode({:?})", self.text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Set(u32),
    Clear(u32),
    /// Set these bits if the file is a directory or had any execute bit.
    SetIfExecutable(u32),
    /// Copy the bits of class `from` into the classes `to` (u, g, o), restricted to `mask`.
    Copy {
        from: Class,
        to: [bool; 3],
        mask: u32,
        set: bool,
        clear: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    User,
    Group,
    Other,
}

impl Chmod {
    /// Parses a `--chmod` value with BuildKit's rules (see the module docs).
    pub fn parse(text: &str) -> Result<Chmod, ModeError> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(text, 8) {
                Ok(value) if value <= 0o7777 => Ok(Chmod::Octal(value)),
                _ => Err(ModeError::Octal(text.to_string())),
            };
        }
        if text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            // `setmode` reads a leading digit as an octal number, and fails on the rest.
            return Err(ModeError::Octal(text.to_string()));
        }
        let cmds = parse_symbolic(text).ok_or_else(|| ModeError::Syntax(text.to_string()))?;
        Ok(Chmod::Symbolic(SymbolicMode { text: text.to_string(), cmds }))
    }

    /// The mode bits (`0o7777`) a file or directory with `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(value) => value & 0o7777,
            Chmod::Symbolic(symbolic) => symbolic.apply(mode & 0o7777, is_dir),
        }
    }

    /// The mode of directories the copy creates on the way to its destination: the octal
    /// value, or `None` (0755) for a symbolic mode.
    pub fn created_dir_mode(&self) -> Option<u32> {
        match self {
            Chmod::Octal(value) => Some(value & 0o7777),
            Chmod::Symbolic(_) => None,
        }
    }
}

impl SymbolicMode {
    fn apply(&self, original: u32, is_dir: bool) -> u32 {
        let mut mode = original;
        for cmd in &self.cmds {
            match *cmd {
                Cmd::Set(bits) => mode |= bits,
                Cmd::Clear(bits) => mode &= !bits,
                Cmd::SetIfExecutable(bits) => {
                    if is_dir || original & 0o111 != 0 {
                        mode |= bits;
                    }
                }
                Cmd::Copy { from, to, mask, set, clear } => {
                    let value = match from {
                        Class::User => (mode & RWXU) >> 6,
                        Class::Group => (mode & RWXG) >> 3,
                        Class::Other => mode & RWXO,
                    };
                    let shifts = [6, 3, 0];
                    if clear {
                        let clear_value = if set { 0o7 } else { value };
                        for (i, shift) in shifts.iter().enumerate() {
                            if to[i] {
                                mode &= !((clear_value << shift) & mask);
                            }
                        }
                    }
                    if set {
                        for (i, shift) in shifts.iter().enumerate() {
                            if to[i] {
                                mode |= (value << shift) & mask;
                            }
                        }
                    }
                }
            }
        }
        mode & 0o7777
    }
}

/// BSD `setmode` with umask 0, producing the command list (see the module docs).
fn parse_symbolic(text: &str) -> Option<Vec<Cmd>> {
    let s = text.as_bytes();
    let mut i = 0;
    let mut cmds = Vec::new();
    if s.is_empty() {
        return None;
    }
    loop {
        let mut who = 0u32;
        loop {
            match *s.get(i)? {
                b'a' => who |= STANDARD,
                b'u' => who |= S_ISUID | RWXU,
                b'g' => who |= S_ISGID | RWXG,
                b'o' => who |= RWXO,
                _ => break,
            }
            i += 1;
        }
        let mut equal_done = false;
        // One or more `op perm*` groups share the `who`.
        loop {
            let op = *s.get(i)?;
            i += 1;
            match op {
                b'+' | b'-' => {}
                b'=' => equal_done = false,
                _ => return None,
            }
            who &= !S_ISVTX;
            let mut perm = 0u32;
            let mut perm_x = 0u32;
            loop {
                let b = s.get(i).copied().unwrap_or(0);
                match b {
                    b'r' => perm |= 0o444,
                    b's' => {
                        if who == 0 || who & !RWXO != 0 {
                            perm |= S_ISUID | S_ISGID;
                        }
                    }
                    b't' => {
                        if who == 0 || who & !RWXO != 0 {
                            who |= S_ISVTX;
                            perm |= S_ISVTX;
                        }
                    }
                    b'w' => perm |= 0o222,
                    b'X' => {
                        if op != b'-' {
                            perm_x = 0o111;
                        } else {
                            perm |= 0o111;
                        }
                    }
                    b'x' => perm |= 0o111,
                    b'u' | b'g' | b'o' => {
                        if perm != 0 {
                            add_cmd(&mut cmds, op, who, perm);
                            perm = 0;
                        }
                        if op == b'=' {
                            equal_done = true;
                        }
                        if perm_x != 0 {
                            add_cmd(&mut cmds, b'X', who, perm_x);
                            perm_x = 0;
                        }
                        let from = match b {
                            b'u' => Class::User,
                            b'g' => Class::Group,
                            _ => Class::Other,
                        };
                        add_copy(&mut cmds, from, who, op);
                    }
                    _ => {
                        if perm != 0 || (op == b'=' && !equal_done) {
                            if op == b'=' {
                                equal_done = true;
                            }
                            add_cmd(&mut cmds, op, who, perm);
                        }
                        if perm_x != 0 {
                            add_cmd(&mut cmds, b'X', who, perm_x);
                        }
                        break;
                    }
                }
                i += 1;
            }
            match s.get(i) {
                None => return Some(cmds),
                Some(b',') => {
                    i += 1;
                    break;
                }
                Some(_) => continue,
            }
        }
    }
}

fn add_cmd(cmds: &mut Vec<Cmd>, op: u8, who: u32, perm: u32) {
    let select = |bits: u32| if who != 0 { who & bits } else { bits };
    match op {
        b'=' => {
            cmds.push(Cmd::Clear(if who != 0 { who } else { STANDARD }));
            cmds.push(Cmd::Set(select(perm)));
        }
        b'+' => cmds.push(Cmd::Set(select(perm))),
        b'-' => cmds.push(Cmd::Clear(select(perm))),
        _ => cmds.push(Cmd::SetIfExecutable(select(perm))),
    }
}

fn add_copy(cmds: &mut Vec<Cmd>, from: Class, who: u32, op: u8) {
    let (to, mask) = if who != 0 {
        ([who & 0o400 != 0, who & 0o040 != 0, who & 0o004 != 0], u32::MAX)
    } else {
        ([true, true, true], u32::MAX)
    };
    let (set, clear) = match op {
        b'+' => (true, false),
        b'-' => (false, true),
        _ => (true, true),
    };
    cmds.push(Cmd::Copy { from, to, mask, set, clear });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(text: &str, mode: u32, is_dir: bool) -> u32 {
        Chmod::parse(text).unwrap().apply(mode, is_dir)
    }

    #[test]
    fn octal_values() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0").unwrap().apply(0o644, false), 0);
        assert_eq!(Chmod::parse("4755").unwrap().apply(0o644, false), 0o4755);
        assert_eq!(Chmod::parse("0644").unwrap().created_dir_mode(), Some(0o644));
        assert_eq!(Chmod::parse("u+x").unwrap().created_dir_mode(), None);
        for bad in ["10000", "8", "64a", "9x"] {
            assert_eq!(
                Chmod::parse(bad).unwrap_err().to_string(),
                format!(
                    "invalid chmod parameter: '{bad}'. it should be octal string and between 0 and 07777"
                )
            );
        }
    }

    /// Expected values are what GNU/BSD `chmod` gives for these modes.
    #[test]
    fn symbolic_like_chmod() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("go-w", 0o666, false, 0o644),
            ("u=rw,g=r,o=r", 0o666, false, 0o644),
            ("a+X", 0o666, false, 0o666),
            ("a+X", 0o744, false, 0o755),
            ("a+X", 0o124, true, 0o135),
            ("go-w", 0o124, true, 0o104),
            ("u+rw,g+r,o-x,o+w", 0o124, true, 0o766),
            ("+x", 0o644, false, 0o755),
            ("=", 0o4755, false, 0),
            ("u=rwx,go=u-w", 0o600, false, 0o755),
            ("go=", 0o777, false, 0o700),
            ("u+s", 0o755, false, 0o4755),
            ("g+s", 0o755, true, 0o2755),
            ("o+s", 0o755, false, 0o755),
            ("+t", 0o755, true, 0o1755),
            ("o+t", 0o755, true, 0o755),
            ("a-t", 0o1777, true, 0o777),
            ("u=rw,+X", 0o711, false, 0o711),
            ("=rw,+X", 0o700, false, 0o777),
            ("=rw,+X", 0o600, false, 0o666),
            ("g=u", 0o640, false, 0o660),
            ("o+g", 0o750, false, 0o755),
            ("u-g", 0o770, false, 0o070),
            ("a=r,u+w", 0o000, false, 0o644),
            ("u+r-w", 0o200, false, 0o400),
            ("ug+x,o-rwx", 0o666, false, 0o770),
            ("a-X", 0o755, false, 0o644),
        ];
        for &(text, mode, is_dir, want) in cases {
            assert_eq!(sym(text, mode, is_dir), want, "{text} on {mode:o} (dir: {is_dir})");
        }
    }

    #[test]
    fn symbolic_syntax_errors() {
        for bad in ["", "u", "u*x", "z+x", "u+x,", "+x,,g+w", "a+q", "u+x y"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            Chmod::parse("u*x").unwrap_err().to_string(),
            "invalid chmod parameter: 'u*x': invalid syntax"
        );
    }
}
