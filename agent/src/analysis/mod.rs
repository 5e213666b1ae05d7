//! analysis stage.
pub mod media;
