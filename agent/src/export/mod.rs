//! export stage.

pub mod otel;
pub mod spans;
