//! Readers for Amazon ratings CSV, a generic CSV with configured column names, and the
//! implicit `user item item ...` format of KGAT/LightGCN.

use super::text::{
    Encoding, find_file, for_each_line, open_lines, parse_num, parse_rating, truncate,
};
use crate::raw::{Interaction, Interner, RawDataset};
use crate::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Column layout of a generic interactions CSV (a header row is required).
///
/// In TOML (`[data.csv]`), `delimiter` is a one-character string (or `"tab"`), and
/// `rating_column = "none"` / `timestamp_column = "none"` mean implicit data / row order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CsvConfig {
    /// Field delimiter byte (default `,`).
    #[serde(with = "delimiter_char")]
    pub delimiter: u8,
    /// Header name of the user-id column.
    pub user_column: String,
    /// Header name of the item-id column.
    pub item_column: String,
    /// Header name of the rating column; `None` (`"none"` in TOML) for implicit data
    /// (every row is a click).
    #[serde(with = "optional_column")]
    pub rating_column: Option<String>,
    /// Header name of the time column (integer); `None` (`"none"` in TOML) orders by row.
    #[serde(with = "optional_column")]
    pub timestamp_column: Option<String>,
    /// Inclusive range of valid ratings.
    pub rating_range: (f32, f32),
}

/// Serde of the delimiter byte as a one-character string.
mod delimiter_char {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(d: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&char::from(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        let text = String::deserialize(d)?;
        if text.eq_ignore_ascii_case("tab") || text == "\\t" {
            return Ok(b'\t');
        }
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii() => Ok(c as u8),
            _ => Err(D::Error::custom(format!(
                "delimiter {text:?}: expected one ASCII character"
            ))),
        }
    }
}

/// Serde of an optional column name: `"none"` (any case) or an empty string is no column.
mod optional_column {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(c.as_deref().unwrap_or("none"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        let none = text.is_empty() || text.eq_ignore_ascii_case("none");
        Ok((!none).then_some(text))
    }
}

impl Default for CsvConfig {
    fn default() -> Self {
        Self {
            delimiter: b',',
            user_column: "user".into(),
            item_column: "item".into(),
            rating_column: Some("rating".into()),
            timestamp_column: Some("timestamp".into()),
            rating_range: (1.0, 5.0),
        }
    }
}

impl CsvConfig {
    /// Sets the user, item, rating and time column names.
    pub fn with_columns(
        mut self,
        user: &str,
        item: &str,
        rating: Option<&str>,
        timestamp: Option<&str>,
    ) -> Self {
        self.user_column = user.into();
        self.item_column = item.into();
        self.rating_column = rating.map(Into::into);
        self.timestamp_column = timestamp.map(Into::into);
        self
    }

    /// Sets the delimiter.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Sets the valid rating range.
    pub fn with_rating_range(mut self, min: f32, max: f32) -> Self {
        self.rating_range = (min, max);
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`DataError::InvalidConfig`] for an empty column name, a non-ASCII or quote delimiter,
    /// or an empty or non-finite rating range.
    pub fn validate(&self) -> Result<()> {
        let (lo, hi) = self.rating_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(DataError::config(
                "rating_range",
                format!("[{lo}, {hi}] is not a finite, non-empty range"),
            ));
        }
        if !self.delimiter.is_ascii() || self.delimiter == b'"' || self.delimiter == b'\n' {
            return Err(DataError::config(
                "delimiter",
                "must be one ASCII character other than a quote or newline",
            ));
        }
        let cols = [
            ("user_column", Some(&self.user_column)),
            ("item_column", Some(&self.item_column)),
            ("rating_column", self.rating_column.as_ref()),
            ("timestamp_column", self.timestamp_column.as_ref()),
        ];
        for (field, name) in cols {
            if name.is_some_and(|n| n.trim().is_empty()) {
                return Err(DataError::config(field, "column name is empty"));
            }
        }
        Ok(())
    }
}

/// Where each configured column sits in a row.
struct Columns {
    user: usize,
    item: usize,
    rating: Option<usize>,
    timestamp: Option<usize>,
    width: usize,
}

/// Reads a delimited file with the csv crate, calling `f(line, fields)` per record.
///
/// Handles quoting, reports invalid UTF-8 and ragged rows with their line.
fn for_each_record(
    path: &Path,
    delimiter: u8,
    hint: &str,
    mut f: impl FnMut(usize, &[&str]) -> Result<()>,
) -> Result<()> {
    let reader = open_lines(path, hint)?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let mut any = false;
    loop {
        let more = rdr.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            match e.into_kind() {
                csv::ErrorKind::Io(io) => DataError::io(path, io),
                other => DataError::parse(path, line, "record", format!("{other:?}")),
            }
        })?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut fields: Vec<&str> = Vec::with_capacity(record.len());
        let mut offset = 0;
        for raw in record.iter() {
            let s = std::str::from_utf8(raw).map_err(|e| DataError::Encoding {
                path: path.to_path_buf(),
                line,
                encoding: "UTF-8",
                byte_offset: offset + e.valid_up_to(),
            })?;
            offset += raw.len() + 1;
            fields.push(s);
        }
        any = true;
        f(line, &fields)?;
    }
    if !any {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Parses one interaction row laid out as `cols`.
#[allow(clippy::too_many_arguments)]
fn parse_row(
    path: &Path,
    line: usize,
    fields: &[&str],
    cols: &Columns,
    names: &[&str],
    range: (f32, f32),
    row: i64,
    users: &mut Interner,
    items: &mut Interner,
) -> Result<Interaction> {
    if fields.len() != cols.width {
        let field = names.get(fields.len()).copied().unwrap_or("end of line");
        return Err(DataError::parse(
            path,
            line,
            field,
            format!(
                "expected {} fields, found {} (wrong separator?) in {:?}",
                cols.width,
                fields.len(),
                truncate(&fields.join(","))
            ),
        ));
    }
    let id = |field: &str, s: &str| -> Result<String> {
        let s = s.trim();
        if s.is_empty() {
            Err(DataError::parse(path, line, field, "is empty"))
        } else {
            Ok(s.to_string())
        }
    };
    let user = id("user", fields[cols.user])?;
    let item = id("item", fields[cols.item])?;
    let rating = match cols.rating {
        Some(c) => parse_rating(path, line, fields[c], range)?,
        None => 1.0,
    };
    let timestamp = match cols.timestamp {
        Some(c) => parse_num(path, line, "timestamp", fields[c])?,
        None => row,
    };
    Ok(Interaction {
        user: users.intern(&user),
        item: items.intern(&item),
        rating,
        timestamp,
    })
}

/// Reads an Amazon ratings CSV as McAuley distributes it: `user,item,rating,timestamp` rows
/// without a header (a first row reading `user,item,rating,timestamp` is skipped), ratings
/// 1..=5.
///
/// # Errors
/// [`DataError`] naming the file, line and field of the first malformed input.
pub fn read_amazon_csv(path: &Path) -> Result<RawDataset> {
    let names = ["user", "item", "rating", "timestamp"];
    let cols = Columns {
        user: 0,
        item: 1,
        rating: Some(2),
        timestamp: Some(3),
        width: 4,
    };
    let mut users = Interner::default();
    let mut items = Interner::default();
    let mut interactions = Vec::new();
    let hint = "Amazon ratings CSV (user,item,rating,timestamp)";
    for_each_record(path, b',', hint, |line, fields| {
        if line == 1
            && fields.len() == 4
            && fields
                .iter()
                .zip(names)
                .all(|(f, n)| f.trim().eq_ignore_ascii_case(n))
        {
            return Ok(());
        }
        let row = interactions.len() as i64;
        interactions.push(parse_row(
            path,
            line,
            fields,
            &cols,
            &names,
            (1.0, 5.0),
            row,
            &mut users,
            &mut items,
        )?);
        Ok(())
    })?;
    if interactions.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(RawDataset {
        name: "amazon".into(),
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        interactions,
        implicit: false,
        item_features: None,
        user_features: None,
    })
}

/// Reads a generic interactions CSV whose header names the columns in `config`.
///
/// # Errors
/// [`DataError::DuplicateHeader`] when the header repeats a name; [`DataError::Parse`] with
/// field `header` when a configured column is absent; otherwise as [`read_amazon_csv`].
pub fn read_csv(path: &Path, config: &CsvConfig) -> Result<RawDataset> {
    config.validate()?;
    let mut users = Interner::default();
    let mut items = Interner::default();
    let mut interactions = Vec::new();
    let mut cols: Option<Columns> = None;
    let mut names: Vec<String> = Vec::new();
    for_each_record(
        path,
        config.delimiter,
        "interactions CSV",
        |line, fields| {
            let Some(c) = &cols else {
                let mut pos = HashMap::new();
                for (i, h) in fields.iter().enumerate() {
                    let h = h.trim();
                    if pos.insert(h.to_string(), i).is_some() {
                        return Err(DataError::DuplicateHeader {
                            path: path.to_path_buf(),
                            line,
                            column: h.to_string(),
                        });
                    }
                }
                let find = |name: &str| {
                    pos.get(name).copied().ok_or_else(|| {
                        DataError::parse(
                            path,
                            line,
                            "header",
                            format!(
                                "no column named {name:?} (header has {:?})",
                                fields.join(",")
                            ),
                        )
                    })
                };
                cols = Some(Columns {
                    user: find(&config.user_column)?,
                    item: find(&config.item_column)?,
                    rating: config.rating_column.as_deref().map(find).transpose()?,
                    timestamp: config.timestamp_column.as_deref().map(find).transpose()?,
                    width: fields.len(),
                });
                names = fields.iter().map(|s| s.trim().to_string()).collect();
                return Ok(());
            };
            let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let row = interactions.len() as i64;
            interactions.push(parse_row(
                path,
                line,
                fields,
                c,
                &name_refs,
                config.rating_range,
                row,
                &mut users,
                &mut items,
            )?);
            Ok(())
        },
    )?;
    if interactions.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(RawDataset {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "csv".into()),
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        interactions,
        implicit: config.rating_column.is_none(),
        item_features: None,
        user_features: None,
    })
}

/// The files an implicit-format path stands for: the file itself, or `train.txt` then
/// `test.txt` (each possibly `.gz`) inside a directory, as KGAT and LightGCN ship them.
fn implicit_files(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let train = find_file(path, "train.txt");
    if !train.exists() {
        return Err(DataError::MissingFile {
            path: train,
            hint: Some(
                "an implicit-feedback folder holds train.txt (and optionally test.txt)".into(),
            ),
        });
    }
    let test = find_file(path, "test.txt");
    Ok(if test.exists() {
        vec![train, test]
    } else {
        vec![train]
    })
}

/// Reads implicit feedback in the `user item item ...` format (whitespace-separated ids, one
/// user per line). `path` is a file or a folder with `train.txt`/`test.txt`, whose lines are
/// concatenated per user in that order.
///
/// The format has no time: an interaction's timestamp is its position in the user's
/// concatenated list, so "chronological" slates follow file order. Every logged item is a
/// click (rating 1).
///
/// # Errors
/// [`DataError`] naming the file, line and field of the first malformed input.
pub fn read_implicit(path: &Path) -> Result<RawDataset> {
    let mut users = Interner::default();
    let mut items = Interner::default();
    let mut interactions = Vec::new();
    let mut next_pos: Vec<i64> = Vec::new();
    for file in implicit_files(path)? {
        let hint = "implicit feedback: lines of `user item item ...`";
        // Lines shaped like `user item rating timestamp` (a ratings file read as implicit
        // lists would turn ratings and timestamps into items).
        let (mut lines, mut rating_like) = (0usize, 0usize);
        for_each_line(&file, Encoding::Utf8, hint, |ln, line| {
            lines += 1;
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let [_, _, rating, time] = fields.as_slice()
                && rating
                    .parse::<f64>()
                    .is_ok_and(|r| (0.0..=10.0).contains(&r))
                && time.parse::<u64>().is_ok_and(|t| t >= 100_000_000)
            {
                rating_like += 1;
            }
            let mut tokens = line.split_whitespace();
            let Some(u) = tokens.next() else {
                return Ok(());
            };
            let uid: u64 = parse_num(&file, ln, "user", u)?;
            let user = users.intern(&uid.to_string());
            if next_pos.len() <= user as usize {
                next_pos.resize(user as usize + 1, 0);
            }
            for (k, tok) in tokens.enumerate() {
                let iid: u64 = parse_num(&file, ln, &format!("item {}", k + 1), tok)?;
                let pos = &mut next_pos[user as usize];
                interactions.push(Interaction {
                    user,
                    item: items.intern(&iid.to_string()),
                    rating: 1.0,
                    timestamp: *pos,
                });
                *pos += 1;
            }
            Ok(())
        })?;
        if lines >= 10 && rating_like * 10 >= lines * 9 {
            return Err(DataError::parse(
                &file,
                1,
                "format",
                format!(
                    "{rating_like} of {lines} lines look like `user item rating timestamp`, not \
                     `user item item ...`: this is a ratings file (use --dataset ml-100k, \
                     amazon or csv)"
                ),
            ));
        }
    }
    if interactions.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let name = path
        .file_name()
        .map(|s| {
            s.to_string_lossy()
                .trim_end_matches(".gz")
                .trim_end_matches(".txt")
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "implicit".into());
    Ok(RawDataset {
        name,
        user_ids: users.into_ids(),
        item_ids: items.into_ids(),
        interactions,
        implicit: true,
        item_features: None,
        user_features: None,
    })
}
