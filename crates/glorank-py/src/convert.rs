//! Between Python objects and the library's types: errors as `GlorankError`, requests
//! (dicts, JSON strings, rows of a pyarrow Table or a pandas DataFrame) in, JSON values
//! out.

use glorank::RerankRequest;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

pyo3::create_exception!(
    _glorank,
    GlorankError,
    pyo3::exceptions::PyException,
    "An error of the GloRank library; the message is the Rust error's, naming the file, field or item."
);

/// A Python exception carrying the Rust error's message.
pub(crate) fn err(e: impl std::fmt::Display) -> PyErr {
    GlorankError::new_err(e.to_string())
}

/// Deepest nesting accepted when converting a Python object to JSON.
const MAX_DEPTH: usize = 64;

/// Converts a Python object (dict, list, tuple, str, int, float, bool, None, or anything with
/// `tolist()` such as a numpy array) into JSON.
pub(crate) fn to_json(obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(err(format!(
            "request nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Value::from(v));
        }
        return Ok(Value::from(obj.extract::<u64>().map_err(err)?));
    }
    if obj.is_instance_of::<PyFloat>() {
        let v: f64 = obj.extract()?;
        return serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| err(format!("{v} is not a finite number")));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in d.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| err("request keys must be strings"))?
                .to_str()?
                .to_owned();
            map.insert(key, to_json(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj
            .try_iter()?
            .map(|v| to_json(&v?, depth + 1))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if obj.hasattr("tolist")? {
        return to_json(&obj.call_method0("tolist")?, depth + 1);
    }
    Err(err(format!(
        "cannot convert a {} to JSON",
        obj.get_type().name()?
    )))
}

/// A request from a dict (or anything [`to_json`] reads) or a JSON string (read as every
/// front-end reads it: a key named twice is refused).
pub(crate) fn to_request(obj: &Bound<'_, PyAny>) -> PyResult<RerankRequest> {
    if let Ok(s) = obj.cast::<PyString>() {
        return RerankRequest::from_json(s.to_str()?).map_err(err);
    }
    serde_json::from_value(to_json(obj, 0)?).map_err(|e| err(format!("malformed request: {e}")))
}

/// The columns of a request-log row that are not part of the serving request.
const LOG_ONLY: [&str; 4] = ["request_id", "timestamp", "shown", "feedback"];

/// `obj` as a pyarrow table: itself when it is one (or a record batch), a pandas DataFrame
/// converted by pyarrow, `None` for any other object.
pub(crate) fn as_arrow<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    if obj.hasattr("to_pylist")? && obj.hasattr("schema")? {
        return Ok(Some(obj.clone()));
    }
    let dataframe = obj.hasattr("to_dict")? && obj.hasattr("columns")? && obj.hasattr("iloc")?;
    if !dataframe {
        return Ok(None);
    }
    let pa = obj
        .py()
        .import("pyarrow")
        .map_err(|e| err(format!("a pandas DataFrame is read through pyarrow: {e}")))?;
    let kwargs = PyDict::new(obj.py());
    kwargs.set_item("preserve_index", false)?;
    let table = pa
        .getattr("Table")?
        .call_method("from_pandas", (obj,), Some(&kwargs))?;
    Ok(Some(table))
}

/// The serving request of one row of a table of requests or logged requests: the log-only
/// columns (`request_id`, `timestamp`, `shown`, `feedback`) and null cells left out.
pub(crate) fn row_request(row: &Bound<'_, PyAny>) -> PyResult<RerankRequest> {
    let row = row.cast::<PyDict>()?;
    let request = PyDict::new(row.py());
    for (key, value) in row.iter() {
        let log_only = key
            .extract::<String>()
            .is_ok_and(|k| LOG_ONLY.contains(&k.as_str()));
        if !log_only && !value.is_none() {
            request.set_item(key, value)?;
        }
    }
    to_request(request.as_any())
}

/// A JSON value as a Python object (through the `json` module).
pub(crate) fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(err)?;
    py.import("json")?.call_method1("loads", (text,))
}
