//! The encrypted object format v1 (work in progress).
