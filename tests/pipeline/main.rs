//! Pipeline tests: capture files, torture messages and crafted TCP streams
//! through the whole userspace pipeline.

mod captures;
mod cli;
mod common;
mod decode;
mod fuzz;
mod hostile;
mod tcp;
mod torture;
mod transactions;
