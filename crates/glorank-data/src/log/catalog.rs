//! The catalogs next to a request log: `items.jsonl` (one item per line: its content
//! vector and optional categories, year and title) and `users.jsonl` (one user per line:
//! categorical attributes). Both are optional; when present their order is the
//! vocabulary order, so two runs over the same files number items and users alike. An
//! optional `vocabularies.json` fixes how categories are numbered (otherwise in order of
//! first appearance):
//!
//! ```json
//! {"item": "i1", "vector": [0.1, -0.3, 0.8], "categories": ["drama"], "year": 1995, "title": "Heat"}
//! {"user": "u3", "features": {"age": "25-34", "country": "fr"}}
//! ```
//!
//! ```json
//! {"categories": ["drama", "comedy"], "user_features": [{"name": "age", "categories": ["18-24", "25-34"]}]}
//! ```

use crate::json::Strict;
use crate::raw::{CategoricalField, ItemFeatures, UserFeatures};
use crate::{DataError, PreparedDataset, Result, USER_ID_FIELD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// File name of the item catalog inside a request-log folder.
pub const ITEMS_FILE: &str = "items.jsonl";

/// File name of the user catalog inside a request-log folder.
pub const USERS_FILE: &str = "users.jsonl";

/// The item catalog in Parquet (the same columns), read when `items.jsonl` is absent.
pub const ITEMS_PARQUET_FILE: &str = "items.parquet";

/// The user catalog in Parquet (the same columns), read when `users.jsonl` is absent.
pub const USERS_PARQUET_FILE: &str = "users.parquet";

/// The items' content vectors as a 2-D `.npy` array, one row per item of the item catalog,
/// in its order (for catalogs that list items without their vectors).
pub const ITEM_VECTORS_NPY_FILE: &str = "item_vectors.npy";

/// File name of the synthetic world's configuration inside a log folder written from the
/// synthetic world: with it, a run on the log scores lists with the world's true click
/// model as a run on the world does.
pub const SYNTHETIC_FILE: &str = "synthetic.json";

/// File name of the optional vocabularies inside a request-log folder.
pub const VOCABULARIES_FILE: &str = "vocabularies.json";

/// The largest `vocabularies.json` or `synthetic.json` read.
const MAX_JSON_BYTES: u64 = 256 << 20;

/// `vocabularies.json`: how the categories of the catalogs are numbered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Vocabularies {
    /// Item categories, in the order they are numbered.
    pub categories: Vec<String>,
    /// User attributes, in order, each with its categories in the order they are numbered
    /// (the unknown category is implicit and numbered 0).
    pub user_features: Vec<NamedVocabulary>,
}

/// One user attribute's categories.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedVocabulary {
    /// The attribute.
    pub name: String,
    /// Its categories, in the order they are numbered from 1.
    pub categories: Vec<String>,
}

/// One line of `items.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRecord {
    /// The item id, as the log names it.
    pub item: String,
    /// Its content vector (the tokenizer's input; every item of a catalog has one of the
    /// same length, or none has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// Categories (genres); numbered in order of first appearance in the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Release year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    /// Title (its words are hashed into content vectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// One line of `users.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The user id, as the log names it.
    pub user: String,
    /// Categorical attributes (attribute name to category).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, String>,
}

/// The catalogs of a log: items and users in file order, each id once.
#[derive(Debug, Default)]
pub(crate) struct Catalogs {
    pub items: Vec<ItemRecord>,
    pub users: Vec<UserRecord>,
    pub vocabularies: Vocabularies,
    /// The synthetic world the log was written from, if it was.
    pub synthetic: Option<crate::SyntheticConfig>,
    /// Where the vocabularies were read, for errors.
    vocabulary_file: Option<std::path::PathBuf>,
}

/// Reads the JSON file `path` (at most 256 MiB; a repeated or unknown key refused).
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let len = std::fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    if len > MAX_JSON_BYTES {
        return Err(DataError::parse(
            path,
            1,
            "file",
            format!("{len} bytes, more than the {MAX_JSON_BYTES}-byte limit"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let value: Strict = serde_json::from_str(&text)
        .map_err(|e| DataError::parse(path, e.line(), "json", e.to_string()))?;
    value
        .into_value()
        .map_err(|e| e.to_string())
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .map_err(|e| DataError::parse(path, 1, "json", e))
}

/// Reads the records of `path` (JSON Lines, or Parquet by its extension) as `T`s (each
/// row strict: a repeated or unknown key is refused), checking each id is named once.
fn read_records<T: DeserializeOwned>(path: &Path, id: impl Fn(&T) -> &str) -> Result<Vec<T>> {
    let mut out: Vec<T> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let handle = |ln: usize, line: &str| {
        let value: Strict = serde_json::from_str(line)
            .map_err(|e| DataError::parse(path, ln, "row", e.to_string()))?;
        let value = value
            .into_value()
            .map_err(|e| DataError::parse(path, ln, "row", e.to_string()))?;
        let record: T = serde_json::from_value(value)
            .map_err(|e| DataError::parse(path, ln, "row", e.to_string()))?;
        if let Some(first) = seen.insert(id(&record).to_string(), ln) {
            return Err(DataError::parse(
                path,
                ln,
                "id",
                format!("`{}` is listed on row {first} already", id(&record)),
            ));
        }
        out.push(record);
        Ok(())
    };
    super::parquet::for_each_json_row(path, "a catalog (JSON Lines)", handle)?;
    Ok(out)
}

/// The catalog file of a log folder: its JSON Lines file, else its Parquet one.
fn catalog_file(dir: &Path, jsonl: &str, parquet: &str) -> Option<std::path::PathBuf> {
    [jsonl, parquet]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
}

impl Catalogs {
    /// The catalogs of the log at `path`: `items.jsonl` and `users.jsonl` in a log folder
    /// (each optional); none for a single-file log.
    ///
    /// # Errors
    /// File errors and malformed lines (file, line and field); item vectors of different
    /// lengths or with non-finite values.
    pub fn read(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Ok(Self::default());
        }
        let mut c = Self::default();
        if let Some(items) = catalog_file(path, ITEMS_FILE, ITEMS_PARQUET_FILE) {
            c.items = read_records(&items, |r: &ItemRecord| &r.item)?;
            c.read_npy_vectors(path)?;
            let dim = c
                .items
                .first()
                .and_then(|r| r.vector.as_ref())
                .map(Vec::len);
            for (k, r) in c.items.iter().enumerate() {
                let len = r.vector.as_ref().map(Vec::len);
                if len != dim || len == Some(0) {
                    return Err(DataError::parse(
                        &items,
                        k + 1,
                        "vector",
                        format!(
                            "{} values where the first item has {} (every item has a vector of one length, or none has)",
                            len.unwrap_or(0),
                            dim.unwrap_or(0)
                        ),
                    ));
                }
                if let Some(v) = r.vector.iter().flatten().find(|v| !v.is_finite()) {
                    return Err(DataError::parse(
                        &items,
                        k + 1,
                        "vector",
                        format!("{v} is not a finite number"),
                    ));
                }
            }
        }
        if let Some(users) = catalog_file(path, USERS_FILE, USERS_PARQUET_FILE) {
            c.users = read_records(&users, |r: &UserRecord| &r.user)?;
        }
        let synthetic = path.join(SYNTHETIC_FILE);
        if synthetic.exists() {
            c.synthetic = Some(read_json(&synthetic)?);
        }
        let vocabularies = path.join(VOCABULARIES_FILE);
        if vocabularies.exists() {
            c.vocabularies = read_json(&vocabularies)?;
            c.vocabulary_file = Some(vocabularies);
        }
        Ok(c)
    }

    /// Gives the catalog's items the rows of `item_vectors.npy` in `dir`, when it exists.
    ///
    /// # Errors
    /// The file's errors (its header, its shape against the catalog); a catalog that gives
    /// vectors too.
    fn read_npy_vectors(&mut self, dir: &Path) -> Result<()> {
        let file = dir.join(ITEM_VECTORS_NPY_FILE);
        if !file.exists() {
            return Ok(());
        }
        if self.items.iter().any(|r| r.vector.is_some()) {
            return Err(DataError::parse(
                &file,
                1,
                "vector",
                "the item catalog gives vectors too: give them in one place",
            ));
        }
        let v = crate::vectors::read_npy(&file, self.items.len())?;
        for (k, r) in self.items.iter_mut().enumerate() {
            r.vector = Some(v.row(k).to_vec());
        }
        Ok(())
    }

    /// The items' content vectors, row-major `[items, dim]` in the order of `item_ids`, when
    /// the catalog has vectors; `item_ids` not in the catalog is an error.
    pub fn vectors(&self, item_ids: &[String]) -> Result<Option<(usize, Vec<f32>)>> {
        let Some(dim) = self
            .items
            .first()
            .and_then(|r| r.vector.as_ref())
            .map(Vec::len)
        else {
            return Ok(None);
        };
        let by_id: HashMap<&str, &ItemRecord> =
            self.items.iter().map(|r| (r.item.as_str(), r)).collect();
        let mut data = Vec::with_capacity(item_ids.len() * dim);
        for id in item_ids {
            let record = by_id.get(id.as_str()).ok_or_else(|| {
                DataError::Insufficient(format!(
                    "item `{id}` of the log is not in {ITEMS_FILE}, which gives every other item a vector"
                ))
            })?;
            data.extend_from_slice(record.vector.as_deref().unwrap_or_default());
        }
        Ok(Some((dim, data)))
    }

    /// The items' content features in the order of `item_ids`, when some catalog item has
    /// categories, a year or a title.
    ///
    /// # Errors
    /// A category missing from `vocabularies.json` when the file exists.
    pub fn item_features(&self, item_ids: &[String]) -> Result<Option<ItemFeatures>> {
        let any = self
            .items
            .iter()
            .any(|r| !r.categories.is_empty() || r.year.is_some() || r.title.is_some());
        if !any {
            return Ok(None);
        }
        let mut names: Vec<String> = self.vocabularies.categories.clone();
        let mut code: HashMap<String, u16> = names
            .iter()
            .enumerate()
            .map(|(k, n)| (n.clone(), k as u16))
            .collect();
        for r in &self.items {
            for c in &r.categories {
                if !code.contains_key(c) {
                    if let Some(file) = &self.vocabulary_file {
                        return Err(DataError::parse(
                            file,
                            1,
                            "categories",
                            format!("item `{}` has category `{c}`, which is not listed", r.item),
                        ));
                    }
                    names.push(c.clone());
                    code.insert(c.clone(), (names.len() - 1) as u16);
                }
            }
        }
        let by_id: HashMap<&str, &ItemRecord> =
            self.items.iter().map(|r| (r.item.as_str(), r)).collect();
        let mut f = ItemFeatures::unknown(item_ids.len(), names);
        for (k, id) in item_ids.iter().enumerate() {
            if let Some(r) = by_id.get(id.as_str()) {
                let mut genres: Vec<u16> = r.categories.iter().map(|c| code[c]).collect();
                genres.sort_unstable();
                genres.dedup();
                f.genres[k] = genres;
                f.years[k] = r.year;
                f.titles[k] = r.title.clone().unwrap_or_default();
            }
        }
        Ok(Some(f))
    }

    /// The users' attributes in the order of `user_ids`, when the catalog has some (a user
    /// outside the catalog, or without an attribute, gets its unknown category).
    ///
    /// # Errors
    /// A category missing from `vocabularies.json` when the file exists.
    pub fn user_features(&self, user_ids: &[String]) -> Result<Option<UserFeatures>> {
        let fixed = &self.vocabularies.user_features;
        let mut names: Vec<&str> = fixed.iter().map(|v| v.name.as_str()).collect();
        for r in &self.users {
            for k in r.features.keys() {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
        }
        if names.is_empty() {
            return Ok(None);
        }
        let by_id: HashMap<&str, &UserRecord> =
            self.users.iter().map(|r| (r.user.as_str(), r)).collect();
        let mut fields = Vec::with_capacity(names.len());
        for &name in &names {
            let mut field = CategoricalField::new(name, user_ids.len());
            let listed = fixed.iter().find(|v| v.name == name);
            for c in listed.iter().flat_map(|v| &v.categories) {
                field.code(c);
            }
            for (u, id) in user_ids.iter().enumerate() {
                if let Some(v) = by_id.get(id.as_str()).and_then(|r| r.features.get(name)) {
                    if let Some(file) = &self.vocabulary_file
                        && !field.vocabulary.contains(v)
                    {
                        return Err(DataError::parse(
                            file,
                            1,
                            "user_features",
                            format!("user `{id}` has {name} `{v}`, which is not listed"),
                        ));
                    }
                    field.values[u] = field.code(v);
                }
            }
            fields.push(field);
        }
        Ok(Some(UserFeatures { fields }))
    }
}

/// Writes the catalogs of a prepared dataset into the log folder `dir`: `items.jsonl`
/// (each item's stage-1 factors as its vector, with its categories, year and title) and,
/// when the dataset has user attributes, `users.jsonl` (the protocol's `user_id` attribute
/// left out: a log run adds it again from its own configuration), `vocabularies.json`, and
/// for the synthetic world `synthetic.json` (its configuration). Items and users are
/// written in index order, so a run on the log numbers them as the dataset does.
///
/// # Errors
/// [`DataError::Io`] naming the file.
pub fn write_catalogs(dir: &Path, ds: &PreparedDataset) -> Result<()> {
    let factors = |i: usize| Some(ds.retriever.item(i).to_vec());
    CatalogSource {
        item_ids: &ds.item_ids,
        item_features: ds.item_features.as_ref(),
        item_vector: &factors,
        user_ids: &ds.user_ids,
        user_features: ds.user_features.as_ref(),
        synthetic: ds.synthetic.as_ref(),
    }
    .write(dir)
}

/// What the catalogs of a log folder are written from.
pub(crate) struct CatalogSource<'a> {
    /// Item ids, in the order they are numbered.
    pub item_ids: &'a [String],
    /// Their content features.
    pub item_features: Option<&'a ItemFeatures>,
    /// The vector of item `i`, if it has one.
    pub item_vector: &'a dyn Fn(usize) -> Option<Vec<f32>>,
    /// User ids, in the order they are numbered.
    pub user_ids: &'a [String],
    /// Their attributes.
    pub user_features: Option<&'a UserFeatures>,
    /// The synthetic world the log comes from.
    pub synthetic: Option<&'a crate::SyntheticConfig>,
}

impl CatalogSource<'_> {
    /// Writes `items.jsonl`, `users.jsonl` (when users have attributes; the protocol's
    /// `user_id` attribute left out), `vocabularies.json` and `synthetic.json` (for a
    /// synthetic world) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let features = self.item_features;
        let items = self.item_ids.iter().enumerate().map(|(i, id)| ItemRecord {
            item: id.clone(),
            vector: (self.item_vector)(i),
            categories: features
                .map(|f| {
                    f.genres[i]
                        .iter()
                        .map(|&g| f.genre_names[g as usize].clone())
                        .collect()
                })
                .unwrap_or_default(),
            year: features.and_then(|f| f.years[i]),
            title: features
                .map(|f| f.titles[i].clone())
                .filter(|t| !t.is_empty()),
        });
        write_lines(&dir.join(ITEMS_FILE), items)?;
        let fields: Vec<&CategoricalField> = self
            .user_features
            .iter()
            .flat_map(|f| &f.fields)
            .filter(|f| f.name != USER_ID_FIELD)
            .collect();
        if !fields.is_empty() {
            let users = self.user_ids.iter().enumerate().map(|(u, id)| UserRecord {
                user: id.clone(),
                features: fields
                    .iter()
                    .filter(|f| f.values[u] != 0)
                    .map(|f| (f.name.clone(), f.vocabulary[f.values[u] as usize].clone()))
                    .collect(),
            });
            write_lines(&dir.join(USERS_FILE), users)?;
        }
        let vocabularies = Vocabularies {
            categories: features.map(|f| f.genre_names.clone()).unwrap_or_default(),
            user_features: fields
                .iter()
                .map(|f| NamedVocabulary {
                    name: f.name.clone(),
                    categories: f.vocabulary[1..].to_vec(),
                })
                .collect(),
        };
        write_json(&dir.join(VOCABULARIES_FILE), &vocabularies)?;
        if let Some(world) = self.synthetic {
            write_json(&dir.join(SYNTHETIC_FILE), world)?;
        }
        Ok(())
    }
}

/// Writes `value` as pretty JSON, atomically.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| DataError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    crate::write_atomic(path, &bytes)
}

/// Writes `records` as JSON Lines, atomically (a temporary file renamed), streamed.
fn write_lines<T: Serialize>(path: &Path, records: impl Iterator<Item = T>) -> Result<()> {
    use std::io::Write;
    crate::prepared::write_atomic_with(path, |out| {
        for r in records {
            serde_json::to_writer(&mut *out, &r).map_err(|e| DataError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            out.write_all(b"\n").map_err(|e| DataError::io(path, e))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Float32Type;
    use arrow_array::{ArrayRef, Int64Array, ListArray, RecordBatch};
    use std::sync::Arc;

    /// A 2-D float32 `.npy` file of `rows` x `cols` holding 0, 1, 2, ...
    fn npy(path: &Path, rows: usize, cols: usize) {
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for k in 0..rows * cols {
            bytes.extend_from_slice(&(k as f32).to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn item_vectors_come_from_parquet_or_npy() {
        let dir = tempfile::tempdir().unwrap();
        // A Parquet catalog with integer ids, as another engine writes it.
        let vectors = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(3.0), Some(4.0)]),
        ]);
        let batch = RecordBatch::try_from_iter(vec![
            ("item", Arc::new(Int64Array::from(vec![7, 8])) as ArrayRef),
            ("vector", Arc::new(vectors) as ArrayRef),
        ])
        .unwrap();
        let file = std::fs::File::create(dir.path().join(ITEMS_PARQUET_FILE)).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let c = Catalogs::read(dir.path()).unwrap();
        let ids = ["8".to_string(), "7".to_string()];
        assert_eq!(
            c.vectors(&ids).unwrap(),
            Some((2, vec![3.0, 4.0, 1.0, 2.0]))
        );
        // A JSON Lines catalog that lists the items, their vectors in item_vectors.npy.
        std::fs::remove_file(dir.path().join(ITEMS_PARQUET_FILE)).unwrap();
        std::fs::write(
            dir.path().join(ITEMS_FILE),
            "{\"item\": \"a\"}\n{\"item\": \"b\"}\n",
        )
        .unwrap();
        npy(&dir.path().join(ITEM_VECTORS_NPY_FILE), 2, 3);
        let c = Catalogs::read(dir.path()).unwrap();
        let ids = ["b".to_string(), "a".to_string()];
        assert_eq!(
            c.vectors(&ids).unwrap(),
            Some((3, vec![3.0, 4.0, 5.0, 0.0, 1.0, 2.0]))
        );
        // Rows for another number of items: an error naming the file.
        npy(&dir.path().join(ITEM_VECTORS_NPY_FILE), 3, 3);
        let e = Catalogs::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains(ITEM_VECTORS_NPY_FILE), "{e}");
    }
}
