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
    /// A line that passed the limit: reading stopped there, inside the line (the buffer is
    /// empty). A data file's reader stops with an error; a stream that goes on with the next
    /// line skips the rest of this one with [`skip_line`].
    TooLong,
}

/// Reads one line into `buf` (cleared first, `\n` removed), holding at most `max` bytes of it
/// in memory. A line longer than `max` is [`BoundedLine::TooLong`] as soon as it passes
/// `max` bytes, so an endless input without a newline (a FIFO, `/dev/zero`) ends there too.
///
/// # Errors
/// The reader's I/O errors.
pub fn read_line_bounded<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<BoundedLine> {
    buf.clear();
    let mut any = false;
    loop {
        let available = filled(reader)?;
        if available.is_empty() {
            return Ok(if any {
                BoundedLine::Line
            } else {
                BoundedLine::Eof
            });
        }
        any = true;
        let (chunk, used, end) = match available.iter().position(|&b| b == b'\n') {
            Some(p) => (&available[..p], p + 1, true),
            None => (available, available.len(), false),
        };
        if buf.len() + chunk.len() > max {
            // Stop inside the line: consume only what fits, never more than `max` in memory.
            let fits = max - buf.len();
            reader.consume(fits);
            buf.clear();
            return Ok(BoundedLine::TooLong);
        }
        buf.extend_from_slice(chunk);
        reader.consume(used);
        if end {
            return Ok(BoundedLine::Line);
        }
    }
}

/// The reader's buffered bytes, filled if empty (retrying an interrupted read); empty at
/// the end of the input.
fn filled<R: BufRead + ?Sized>(reader: &mut R) -> std::io::Result<&[u8]> {
    loop {
        match reader.fill_buf() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    reader.fill_buf()
}

/// How [`skip_line`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// At the line's newline (consumed); `bytes` were skipped before it.
    Newline {
        /// Bytes skipped, without the newline.
        bytes: u64,
    },
    /// At the end of the input.
    Eof,
    /// After `cap` bytes without a newline: the line does not end within the cap (an endless
    /// stream), and the caller should stop reading it.
    Endless,
}

/// Consumes the rest of the current line (through its `\n`), at most `cap` bytes of it, in
/// constant memory.
///
/// # Errors
/// The reader's I/O errors.
pub fn skip_line<R: BufRead + ?Sized>(reader: &mut R, cap: u64) -> std::io::Result<Skipped> {
    let mut skipped = 0u64;
    loop {
        let available = filled(reader)?;
        if available.is_empty() {
            return Ok(Skipped::Eof);
        }
        if let Some(p) = available.iter().position(|&b| b == b'\n') {
            reader.consume(p + 1);
            return Ok(Skipped::Newline {
                bytes: skipped + p as u64,
            });
        }
        let n = available.len();
        reader.consume(n);
        skipped += n as u64;
        if skipped >= cap {
            return Ok(Skipped::Endless);
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
    fn long_lines_stop_at_the_limit_and_the_next_is_read_after_skipping() {
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
            BoundedLine::TooLong
        );
        assert!(buf.is_empty());
        assert_eq!(
            skip_line(&mut r, 100).unwrap(),
            Skipped::Newline { bytes: 4 }
        );
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::Line
        );
        assert_eq!(buf, b"cd\r");
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::TooLong
        );
        assert_eq!(skip_line(&mut r, 100).unwrap(), Skipped::Eof);
        assert_eq!(
            read_line_bounded(&mut r, &mut buf, 4).unwrap(),
            BoundedLine::Eof
        );
    }

    #[test]
    fn an_endless_line_ends_at_the_limit_in_bounded_memory() {
        // An input without end and without a newline: the read returns once the limit is
        // passed, holding at most the limit; skipping gives up at its cap.
        let mut r = std::io::BufReader::new(std::io::repeat(0));
        let mut buf = Vec::new();
        let got = read_line_bounded(&mut r, &mut buf, 1024).unwrap();
        assert_eq!(got, BoundedLine::TooLong);
        assert!(buf.capacity() <= 64 * 1024, "{}", buf.capacity());
        assert_eq!(skip_line(&mut r, 1 << 20).unwrap(), Skipped::Endless);
        let mut limited = LineLimit::new(std::io::repeat(b'x').take(10_000), 100);
        let mut sink = Vec::new();
        let e = limited.read_to_end(&mut sink).unwrap_err();
        assert!(
            e.to_string().contains("line 1 is longer than 100 bytes"),
            "{e}"
        );
    }
}
