//! Helpers shared by the pipeline tests.

use std::path::{Path, PathBuf};

use sipscope::capture::file::CaptureFile;
use sipscope::pipeline::{Event, Pipeline, PipelineConfig, Stats};

/// The workspace root (the parent of the agent crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn fixtures() -> PathBuf {
    workspace().join("tests/fixtures")
}

/// `<workspace>/../shared/testdata/external`, when present beside the clone.
pub fn shared_external() -> Option<PathBuf> {
    let p = workspace().join("../shared/testdata/external");
    p.is_dir().then_some(p)
}

/// Run a capture file through a fresh pipeline; all events plus counters.
pub fn run_file(path: &Path, config: PipelineConfig) -> (Vec<Event>, Stats) {
    let mut pipeline = Pipeline::new(config);
    let mut events = Vec::new();
    for pkt in CaptureFile::open(path).unwrap_or_else(|e| panic!("{e}")) {
        let pkt = pkt.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        pipeline.ingest_into(&pkt, &mut events);
    }
    events.extend(pipeline.finish());
    (events, pipeline.stats())
}
