//! Line-oriented text input with file/line positions, UTF-8 or Latin-1 decoding, and
//! transparent gzip (`.gz`) decompression.

use super::limits::{BoundedLine, LineLimit, MAX_LINE_BYTES, read_line_bounded};
use crate::{DataError, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Text encoding of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// UTF-8; invalid sequences are errors.
    Utf8,
    /// ISO-8859-1 (MovieLens titles). Every byte maps to a code point, but C0 control bytes
    /// other than tab and the C1 range 0x80-0x9F never occur in Latin-1 text: they signal a
    /// wrong encoding (UTF-16, Windows-1252) or a binary file and are rejected.
    Latin1,
}

/// Opens `path` for reading, decompressing gzip when the name ends in `.gz`.
///
/// `hint` says what the file is for; it is shown when the file is missing.
pub(crate) fn open(path: &Path, hint: &str) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile {
                path: path.to_path_buf(),
                hint: Some(hint.to_string()),
            }
        } else {
            DataError::io(path, e)
        }
    })?;
    let gz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// Reads a text file line by line, calling `f(line_number, line)` for each non-blank line.
///
/// Line numbers are 1-based and count blank lines too, so they match an editor's. A trailing
/// `\r` is removed. Returns the number of lines passed to `f`; a file without any is a
/// [`DataError::EmptyFile`].
pub(crate) fn for_each_line(
    path: &Path,
    encoding: Encoding,
    hint: &str,
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<usize> {
    let mut reader = open(path, hint)?;
    let mut buf = Vec::with_capacity(256);
    let mut text = String::with_capacity(256);
    let mut line_no = 0usize;
    let mut data_lines = 0usize;
    loop {
        let got = read_line_bounded(&mut reader, &mut buf, MAX_LINE_BYTES)
            .map_err(|e| DataError::io(path, e))?;
        line_no += 1;
        match got {
            BoundedLine::Eof => break,
            BoundedLine::TooLong => {
                return Err(DataError::parse(
                    path,
                    line_no,
                    "line",
                    format!(
                        "longer than the {MAX_LINE_BYTES}-byte limit (not a text file of this format, or an input without end?)"
                    ),
                ));
            }
            BoundedLine::Line => {}
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let line: &str = match encoding {
            Encoding::Utf8 => std::str::from_utf8(&buf).map_err(|e| DataError::Encoding {
                path: path.to_path_buf(),
                line: line_no,
                encoding: "UTF-8",
                byte_offset: e.valid_up_to(),
            })?,
            Encoding::Latin1 => {
                if let Some(pos) = buf
                    .iter()
                    .position(|&b| (b < 0x20 && b != b'\t') || (0x80..0xA0).contains(&b))
                {
                    return Err(DataError::Encoding {
                        path: path.to_path_buf(),
                        line: line_no,
                        encoding: "Latin-1",
                        byte_offset: pos,
                    });
                }
                text.clear();
                text.extend(buf.iter().map(|&b| b as char));
                &text
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        data_lines += 1;
        f(line_no, line)?;
    }
    if data_lines == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(data_lines)
}

/// Splits `line` on `sep` into exactly `names.len()` fields.
///
/// Too few fields is reported on the first missing field; too many on a pseudo-field
/// `end of line`. Both messages name the separator, which catches files in another format.
pub(crate) fn split_exact<'a>(
    path: &Path,
    line_no: usize,
    line: &'a str,
    sep: &str,
    names: &[&str],
) -> Result<Vec<&'a str>> {
    let fields: Vec<&str> = line.split(sep).collect();
    if fields.len() < names.len() {
        return Err(DataError::parse(
            path,
            line_no,
            names[fields.len()],
            format!(
                "missing: expected {} fields separated by {sep:?}, found {} in {:?}",
                names.len(),
                fields.len(),
                truncate(line)
            ),
        ));
    }
    if fields.len() > names.len() {
        return Err(DataError::parse(
            path,
            line_no,
            "end of line",
            format!(
                "expected {} fields separated by {sep:?}, found {} in {:?}",
                names.len(),
                fields.len(),
                truncate(line)
            ),
        ));
    }
    Ok(fields)
}

/// Parses a numeric field, naming it and quoting the text on failure.
pub(crate) fn parse_num<T: std::str::FromStr>(
    path: &Path,
    line_no: usize,
    field: &str,
    text: &str,
) -> Result<T> {
    text.trim().parse::<T>().map_err(|_| {
        DataError::parse(
            path,
            line_no,
            field,
            format!("expected a number, found {:?}", truncate(text)),
        )
    })
}

/// Parses a rating and checks it lies in `[min, max]`.
pub(crate) fn parse_rating(
    path: &Path,
    line_no: usize,
    text: &str,
    (min, max): (f32, f32),
) -> Result<f32> {
    let r: f32 = parse_num(path, line_no, "rating", text)?;
    if !r.is_finite() || r < min || r > max {
        return Err(DataError::parse(
            path,
            line_no,
            "rating",
            format!("{r} is out of range [{min}, {max}]"),
        ));
    }
    Ok(r)
}

/// The first 60 characters of a line, for error messages.
pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        let t: String = s.chars().take(57).collect();
        format!("{t}...")
    }
}

/// Largest binary input (`.npy` item vectors) read into memory: 4 GiB.
pub(crate) const MAX_BINARY_BYTES: u64 = 4 << 30;

/// [`open`] with every line limited to [`MAX_LINE_BYTES`] (for parsers that buffer records).
pub(crate) fn open_lines(
    path: &Path,
    hint: &str,
) -> Result<BufReader<LineLimit<Box<dyn BufRead>>>> {
    Ok(BufReader::new(LineLimit::new(
        open(path, hint)?,
        MAX_LINE_BYTES,
    )))
}

/// `dir/name`, or `dir/name.gz` when only the compressed file exists.
pub(crate) fn find_file(dir: &Path, name: &str) -> PathBuf {
    let plain = dir.join(name);
    if plain.exists() {
        return plain;
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.exists() { gz } else { plain }
}
