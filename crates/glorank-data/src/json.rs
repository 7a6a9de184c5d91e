//! One way to read JSON for every input that comes as JSON (serving requests from `glorank
//! rerank`, the HTTP server and the Python bindings; request logs): serde_json's reading,
//! except that an object naming a key twice is found (at any depth) and refused instead of
//! keeping the last value.
//!
//! ```
//! use glorank_data::json::Strict;
//! let s: Strict = serde_json::from_str(r#"{"a": 1, "a": 2}"#).unwrap();
//! assert_eq!(s.into_value().unwrap_err().to_string(), "duplicate key `a`");
//! ```

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value and the first key an object of it named twice (at any depth).
pub struct Strict {
    /// The value (with the last of a repeated key's values).
    pub value: Value,
    /// The first repeated key, if any.
    pub duplicate: Option<String>,
}

/// A JSON object named this key twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("duplicate key `{0}`")]
pub struct DuplicateKey(pub String);

impl Strict {
    /// The value, or the key named twice.
    ///
    /// # Errors
    /// [`DuplicateKey`] naming the first repeated key.
    pub fn into_value(self) -> Result<Value, DuplicateKey> {
        match self.duplicate {
            Some(key) => Err(DuplicateKey(key)),
            None => Ok(self.value),
        }
    }
}

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(plain(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(plain(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(plain(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(plain(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(plain(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(plain(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(plain(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(plain(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        let mut duplicate = None;
        while let Some(s) = seq.next_element::<Strict>()? {
            duplicate = duplicate.or(s.duplicate);
            items.push(s.value);
        }
        Ok(Strict {
            value: Value::Array(items),
            duplicate,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            let s: Strict = map.next_value()?;
            duplicate = duplicate.or(s.duplicate);
            if out.contains_key(&key) && duplicate.is_none() {
                duplicate = Some(key.clone());
            }
            out.insert(key, s.value);
        }
        Ok(Strict {
            value: Value::Object(out),
            duplicate,
        })
    }
}

fn plain(value: Value) -> Strict {
    Strict {
        value,
        duplicate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_found_at_any_depth() {
        let read = |t: &str| serde_json::from_str::<Strict>(t).unwrap().into_value();
        assert!(read(r#"{"a": 1, "b": [1, {"c": 2}]}"#).is_ok());
        assert_eq!(
            read(r#"{"a": 1, "a": 2}"#).unwrap_err().to_string(),
            "duplicate key `a`"
        );
        assert_eq!(
            read(r#"[{"x": {"k": 1, "k": 1}}]"#)
                .unwrap_err()
                .to_string(),
            "duplicate key `k`"
        );
        assert_eq!(
            read("[1, 2.5, null, true]").unwrap(),
            serde_json::json!([1, 2.5, null, true])
        );
    }
}
