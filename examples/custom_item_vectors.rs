//! Bring your own item embeddings: write them as a `.npy` file (one row per item, in the
//! prepared dataset's item order) and learn semantic IDs from them.
//!
//! `cargo run --release -p glorank-examples --example custom_item_vectors`

use glorank::data::{
    DatasetSource, ItemVectorSource, NoProgress, ProtocolConfig, SyntheticConfig, item_vectors,
};
use glorank::tokenizer::{ItemTokenizer, RqKMeans, RqKMeansConfig};
use std::io::Write;

/// Writes a 2-D little-endian float32 `.npy` file.
fn write_npy(
    path: &std::path::Path,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> std::io::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut f = std::fs::File::create(path)?;
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(header.as_bytes())?;
    for v in data {
        f.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

fn main() -> Result<(), glorank::Error> {
    let ds = DatasetSource::Synthetic(SyntheticConfig::small(300, 200))
        .prepare(&ProtocolConfig::default().with_k_core(5), &NoProgress)?;
    // Stand-in for your embeddings: the retriever's item factors, squared element-wise.
    let mf = item_vectors(&ds, &ItemVectorSource::MfFactors)?;
    let mine: Vec<f32> = mf.data.iter().map(|x| x * x.abs()).collect();
    let dir = std::env::temp_dir().join("glorank-custom-vectors");
    std::fs::create_dir_all(&dir).map_err(|e| glorank::Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let path = dir.join("items.npy");
    write_npy(&path, ds.num_items(), mf.dim, &mine).map_err(|e| glorank::Error::Io {
        path: path.clone(),
        source: e,
    })?;

    // The same file works in a pipeline configuration: `[tokenizer] vectors_file = "..."`.
    let v = item_vectors(&ds, &ItemVectorSource::File(path.clone()))?;
    assert_eq!((v.len(), v.dim), (ds.num_items(), mf.dim));
    let mut tok = RqKMeans::new(RqKMeansConfig::new(2, 16).with_seed(0))?;
    let ids = tok.fit(&v.data, v.dim)?;
    println!(
        "{} items from {} -> semantic IDs like {:?}",
        ids.len(),
        path.display(),
        ids.tuple(0)
    );
    if let Some(stats) = tok.stats() {
        println!("{}", stats.table());
    }
    Ok(())
}
