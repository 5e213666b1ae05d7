//! Digest tests: published vectors, parser edge cases, checks, and
//! never-panic property tests.

mod checks;
mod exchanges;
mod outcome;
mod parse;
mod proptests;
mod real_peer;
mod vectors;
