//! Word splitting for [`Lexer::process_words`](super::Lexer::process_words): collects the
//! expanded text into words while the lexer walks the input.
//!
//! Invariants:
//! - Text that came out of a `$` expansion unquoted is split at Unicode white space; text that
//!   came from quotes, escapes or a `<<` heredoc marker is kept whole ([`WordSplitter::push_literal`]).
//! - A word is emitted only when it is non-empty, so `''` and `""` on their own produce no word.
//! - BuildKit quirk, reproduced on purpose: BuildKit shares one buffer between the outer word
//!   and the inner word of `${V:-word}`-style expansions (every form that reads a word, pattern
//!   or replacement), so the text collected for the current word before such an expansion is
//!   lost from the split output (`a${X:-b}c` splits to `["bc"]`, while the joined value is
//!   `abc`). The lexer calls [`WordSplitter::discard_current`] at those points. Keeping this
//!   makes EXPOSE and heredoc-marker detection agree with BuildKit.

use super::unicode::is_space;

#[derive(Debug, Default)]
pub(super) struct WordSplitter {
    current: String,
    words: Vec<String>,
}

impl WordSplitter {
    /// Adds unquoted text: white space ends the current word.
    pub(super) fn push_splittable(&mut self, text: &str) {
        for c in text.chars() {
            self.push_splittable_char(c);
        }
    }

    /// Adds one unquoted character: white space ends the current word.
    pub(super) fn push_splittable_char(&mut self, c: char) {
        if is_space(c) {
            self.end_word();
        } else {
            self.current.push(c);
        }
    }

    /// Adds text that belongs to the current word whatever it contains.
    pub(super) fn push_literal(&mut self, text: &str) {
        self.current.push_str(text);
    }

    /// Adds one character that belongs to the current word whatever it is.
    pub(super) fn push_literal_char(&mut self, c: char) {
        self.current.push(c);
    }

    /// Drops the text collected for the current word so far (see the module docs).
    pub(super) fn discard_current(&mut self) {
        self.current.clear();
    }

    /// The words, ending the one in progress.
    pub(super) fn finish(mut self) -> Vec<String> {
        self.end_word();
        self.words
    }

    fn end_word(&mut self) {
        if !self.current.is_empty() {
            self.words.push(std::mem::take(&mut self.current));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_only_unquoted_space() {
        let mut words = WordSplitter::default();
        words.push_splittable("  ab\tc ");
        words.push_literal(" d e ");
        words.push_splittable_char('f');
        words.push_splittable_char('\u{3000}');
        words.push_literal_char(' ');
        assert_eq!(words.finish(), ["ab", "c", " d e f", " "]);
    }

    #[test]
    fn empty_words_vanish() {
        let mut words = WordSplitter::default();
        words.push_literal("");
        words.push_splittable(" ");
        words.push_literal("");
        assert!(words.finish().is_empty());
    }

    #[test]
    fn discard_drops_only_the_word_in_progress() {
        let mut words = WordSplitter::default();
        words.push_splittable("a b");
        words.discard_current();
        words.push_splittable("c");
        assert_eq!(words.finish(), ["a", "c"]);
    }
}
