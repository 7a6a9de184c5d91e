//! Readers of public interaction datasets into a [`RawDataset`](crate::RawDataset).

pub(crate) mod limits;
pub(crate) mod movielens;
pub(crate) mod tabular;
pub(crate) mod text;
