use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
// cargo_metadata is the same version aya-build uses.

/// Builds `sipscope-ebpf` for bpfel-unknown-none with the nightly toolchain
/// and bpf-linker (both installed by `cargo xtask setup`); the agent embeds
/// the object from `$OUT_DIR/sipscope`.
///
/// With AYA_BUILD_SKIP=1 (`cargo check`, clippy, docs on a machine without
/// the eBPF toolchain) an empty stand-in object is written instead; the
/// agent then refuses live capture with a message saying how to rebuild.
fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "sipscope-ebpf")
        .ok_or_else(|| anyhow!("sipscope-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
        .as_str();

    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        let stand_in = out_dir.join("sipscope");
        if !stand_in.exists() {
            fs::write(&stand_in, []).context("writing stand-in eBPF object")?;
        }
    }
    // aya-build watches only the eBPF crate's folder; the kernel programs
    // also compile `sipscope-common` (the RTP arithmetic, the record
    // layouts), and a change there must rebuild the embedded object too.
    let common_dir = std::path::Path::new(root_dir).join("../common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    aya_build::build_ebpf(
        [aya_build::Package {
            name: name.as_str(),
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
