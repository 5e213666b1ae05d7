//! Pipeline tests: capture files through the whole userspace pipeline.
