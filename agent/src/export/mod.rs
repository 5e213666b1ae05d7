//! Export stage: where results leave the agent. [`console`] renders a
//! call flow for people, [`json`] writes JSON lines for programs.

pub mod console;
pub mod json;
