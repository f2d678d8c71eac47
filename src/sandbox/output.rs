//! Splitting the command's output into lines as it streams.
//!
//! Invariant: memory stays bounded. A line longer than [`MAX_LINE`] is handed on in pieces of
//! that size; whatever is left without a newline at the end of the stream is handed on as a
//! last line.

/// Which output stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Longest piece buffered before it is passed on without its newline.
pub const MAX_LINE: usize = 64 * 1024;

/// Accumulates bytes and emits complete lines (each with its trailing `\n`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed `data`; `emit` receives every completed line.
    pub fn push(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(pos + 1);
            if self.pending.is_empty() {
                emit(line);
            } else {
                self.pending.extend_from_slice(line);
                emit(&self.pending);
                self.pending.clear();
            }
            data = rest;
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            emit(&self.pending);
            self.pending = rest;
        }
    }

    /// End of stream: emit what is left.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::default();
        for chunk in chunks {
            splitter.push(chunk, &mut |line| out.push(line.to_vec()));
        }
        splitter.finish(&mut |line| out.push(line.to_vec()));
        out
    }

    #[test]
    fn lines_are_joined_across_chunks() {
        assert_eq!(
            split(&[b"a\nb", b"c\n\nd"]),
            [b"a\n".to_vec(), b"bc\n".to_vec(), b"\n".to_vec(), b"d".to_vec()]
        );
    }

    #[test]
    fn long_lines_are_cut_at_the_bound() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = split(&[&long, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(out[1], [vec![b'x'; 10], b"\n".to_vec()].concat());
    }
}
