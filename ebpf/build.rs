use which::which;

/// Rebuild the eBPF object whenever bpf-linker changes (a new LLVM means new
/// code generation), as the aya template does.
fn main() {
    let bpf_linker = which("bpf-linker").unwrap();
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
