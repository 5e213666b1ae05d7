use which::which;

/// Rebuild the eBPF object whenever bpf-linker changes (a new LLVM means new
/// code generation), as the aya template does.
fn main() {
    let bpf_linker = which("bpf-linker").unwrap();
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
    // aya-build passes the architecture the object is built for (the
    // host's) as `--cfg bpf_target_arch="..."`; `rtp` releases its lock by
    // it.
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
}
