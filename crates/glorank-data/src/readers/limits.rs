//! Bounds on what one line of input may cost: a line longer than the limit is an error (or,
//! on a serving stream, an error for that line alone), never an allocation without end.

use std::io::{BufRead, Read};

/// Longest line a data file (ratings, CSV, implicit lists, vector CSV) may have: 16 MiB.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// What [`read_line_bounded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundedLine {
    /// The end of the input; nothing was read.
    Eof,
    /// A line (now in the buffer, without its `\n`).
    Line,
    /// A line longer than the limit; it was read through its end and dropped (the buffer is
    /// empty). `bytes` is its length.
    TooLong {
        /// The line's length in bytes (without the `\n`).
        bytes: usize,
    },
}

/// Reads one line into `buf` (cleared first, `\n` removed), holding at most `max` bytes of it
/// in memory: a longer line is consumed to its end and reported as
/// [`BoundedLine::TooLong`], so the next call reads the next line.
///
/// # Errors
/// The reader's I/O errors.
pub fn read_line_bounded<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<BoundedLine> {
    buf.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, len > max) {
                (false, _) => BoundedLine::Eof,
                (true, false) => BoundedLine::Line,
                (true, true) => BoundedLine::TooLong { bytes: len },
            });
        }
        any = true;
        let (chunk, used, end) = match available.iter().position(|&b| b == b'\n') {
            Some(p) => (&available[..p], p + 1, true),
            None => (available, available.len(), false),
        };
        len += chunk.len();
        if len <= max {
            buf.extend_from_slice(chunk);
        } else {
            buf.clear();
        }
        reader.consume(used);
        if end {
            return Ok(if len > max {
                BoundedLine::TooLong { bytes: len }
            } else {
                BoundedLine::Line
            });
        }
    }
}

/// A reader that fails with [`std::io::ErrorKind::InvalidData`] ("line N is longer than M
/// bytes") as soon as a line grows past `max` bytes, for parsers (such as the CSV reader)
/// that buffer a whole record.
#[derive(Debug)]
pub struct LineLimit<R> {
    inner: R,
    max: usize,
    since_newline: usize,
    line: usize,
}

impl<R> LineLimit<R> {
    /// Wraps `inner`, allowing lines of at most `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            since_newline: 0,
            line: 1,
        }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        for &b in &out[..n] {
            if b == b'\n' {
                self.line += 1;
                self.since_newline = 0;
            } else {
                self.since_newline += 1;
                if self.since_newline > self.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("line {} is longer than {} bytes", self.line, self.max),
                    ));
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_skipped_and_the_next_is_read() {
        let text = b"ab\nabcdefgh\ncd\r\nxyz12345";
        let mut r = std::io::BufReader::with_capacity(3, &text[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::Line
        );
        assert_eq!(buf, b"ab");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::TooLong { bytes: 8 }
        );
        assert!(buf.is_empty());
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::Line
        );
        assert_eq!(buf, b"cd\r");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::TooLong { bytes: 8 }
        );
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::Eof
        );
    }

    #[test]
    fn an_endless_line_costs_at_most_the_limit() {
        // 1 MiB of zeros without a newline, limit 1 KiB: memory stays bounded.
        let zeros = std::io::repeat(0).take(1 << 20);
        let mut r = std::io::BufReader::new(zeros);
        let mut buf = Vec::new();
        let got = read_line_bounded(&mut r, &mut buf, 1024).unwrap();
        assert_eq!(got, BoundedLine::TooLong { bytes: 1 << 20 });
        assert!(buf.capacity() <= 64 * 1024, "{}", buf.capacity());
        let mut limited = LineLimit::new(std::io::repeat(b'x').take(10_000), 100);
        let mut sink = Vec::new();
        let e = limited.read_to_end(&mut sink).unwrap_err();
        assert!(
            e.to_string().contains("line 1 is longer than 100 bytes"),
            "{e}"
        );
    }
}
