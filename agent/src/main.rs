//! The `sipscope` command line.

mod cli;

/// mimalloc instead of glibc's malloc. Live, the analysis thread allocates
/// the spans and the export task frees them on another thread; glibc's
/// malloc handled that badly (a third of the agent's CPU under
/// `cargo xtask bench sipp` was in `_int_malloc`, `malloc_consolidate`
/// and `free`), mimalloc frees into the owning thread's pages. Its v2
/// line, not v3: v3 cost about the same CPU but raised the agent's peak
/// RSS under that load by a fifth, v2 left it where glibc had it (README
/// "What capture costs").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
