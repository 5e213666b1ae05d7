//! Pipeline tests: capture files, torture messages and crafted TCP streams
//! through the whole userspace pipeline.

mod captures;
mod cli;
mod clients;
mod common;
mod decode;
mod fuzz;
mod fuzz_corpus;
mod hostile;
mod import_rules;
mod service_unit;
mod tcp;
mod torture;
mod transactions;
