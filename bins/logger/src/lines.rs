//! Cutting a batch of input into output records: whole lines, pieces of over-long lines, and
//! the unterminated last line at end of input. Pure, so every edge is unit-tested.

/// The bytes written after the content of a piece of an over-long line, before its newline.
#[cfg(test)]
pub const SPLIT_MARKER: &[u8] = b"[...]";

/// How a record ends in the output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The content includes its own newline.
    Newline,
    /// A piece of a line longer than the maximum: `SPLIT_MARKER` and a newline follow.
    Split,
    /// The last bytes of the input, without a newline: one is added.
    Eof,
}

impl End {
    /// What is written after the content.
    pub fn suffix(self) -> &'static [u8] {
        match self {
            End::Newline => b"",
            End::Split => b"[...]\n",
            End::Eof => b"\n",
        }
    }
}

/// One output line: `batch[start..end]` then `end`'s suffix (the stamp goes before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub start: usize,
    pub end: usize,
    pub ending: End,
}

impl Record {
    /// Output length, stamp excluded.
    pub fn body_len(&self) -> usize {
        self.end - self.start + self.ending.suffix().len()
    }
}

/// Appends to `records` every record `batch` holds and returns how many bytes of it they
/// cover. A trailing line without newline is left over (it may still grow) unless it has
/// reached `max_line` bytes (then it is cut into pieces) or `at_eof` is set.
pub fn plan(batch: &[u8], max_line: usize, at_eof: bool, records: &mut Vec<Record>) -> usize {
    let max_line = max_line.max(1);
    let mut pos = 0;
    while pos < batch.len() {
        let rest = batch.get(pos..).unwrap_or_default();
        // A newline as the byte right after `max_line` content bytes still ends the line whole.
        let window = rest.get(..max_line + 1).unwrap_or(rest);
        if let Some(i) = find_newline(window) {
            records.push(Record {
                start: pos,
                end: pos + i + 1,
                ending: End::Newline,
            });
            pos += i + 1;
        } else if rest.len() > max_line {
            records.push(Record {
                start: pos,
                end: pos + max_line,
                ending: End::Split,
            });
            pos += max_line;
        } else if at_eof {
            records.push(Record {
                start: pos,
                end: batch.len(),
                ending: End::Eof,
            });
            pos = batch.len();
        } else {
            break;
        }
    }
    pos
}

/// Position of the first `\n`, eight bytes at a time (the classic SWAR zero-byte test):
/// the per-byte loop would be the logger's hottest code.
pub fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(batch: &[u8], max: usize, eof: bool) -> (Vec<(Vec<u8>, End)>, usize) {
        let mut records = Vec::new();
        let used = plan(batch, max, eof, &mut records);
        let lines = records
            .iter()
            .map(|r| (batch[r.start..r.end].to_vec(), r.ending))
            .collect();
        (lines, used)
    }

    #[test]
    fn whole_lines_and_a_pending_partial() {
        let (lines, used) = cut(b"one\ntwo\nthr", 100, false);
        assert_eq!(
            lines,
            vec![
                (b"one\n".to_vec(), End::Newline),
                (b"two\n".to_vec(), End::Newline)
            ]
        );
        assert_eq!(used, 8);
    }

    #[test]
    fn partial_is_written_at_eof_with_a_newline_added() {
        let (lines, used) = cut(b"one\nthr", 100, true);
        assert_eq!(lines[1], (b"thr".to_vec(), End::Eof));
        assert_eq!(used, 7);
        assert_eq!(End::Eof.suffix(), b"\n");
    }

    #[test]
    fn long_line_is_cut_into_marked_pieces() {
        let (lines, used) = cut(b"abcdefghij\nxy", 4, false);
        assert_eq!(
            lines,
            vec![
                (b"abcd".to_vec(), End::Split),
                (b"efgh".to_vec(), End::Split),
                (b"ij\n".to_vec(), End::Newline),
            ]
        );
        assert_eq!(used, 11);
        assert!(End::Split.suffix().starts_with(SPLIT_MARKER));
    }

    #[test]
    fn line_of_exactly_the_maximum_is_not_split() {
        let (lines, _) = cut(b"abcd\n", 4, false);
        assert_eq!(lines, vec![(b"abcd\n".to_vec(), End::Newline)]);
        // Four bytes and no newline yet: it may still end here, so wait.
        let (lines, used) = cut(b"abcd", 4, false);
        assert!(lines.is_empty());
        assert_eq!(used, 0);
    }

    #[test]
    fn empty_lines_and_binary_bytes_pass_through() {
        let (lines, used) = cut(b"\n\0\xff\n", 100, false);
        assert_eq!(
            lines,
            vec![
                (b"\n".to_vec(), End::Newline),
                (b"\0\xff\n".to_vec(), End::Newline)
            ]
        );
        assert_eq!(used, 4);
    }

    #[test]
    fn swar_search_matches_the_naive_one() {
        let mut data = [b'a'; 100];
        for pos in 0..100 {
            data.fill(b'a');
            data[pos] = b'\n';
            data[(pos + 37) % 100] = 0x8a; // high bit set, low bits of '\n'
            for start in 0..9 {
                let naive = data[start..].iter().position(|&b| b == b'\n');
                assert_eq!(
                    find_newline(&data[start..]),
                    naive,
                    "pos {pos} start {start}"
                );
            }
        }
        assert_eq!(find_newline(b""), None);
        assert_eq!(find_newline(b"\x0b\x09\x8a"), None);
    }
}
