//! A static check of the built eBPF object: the program variants meant for
//! Linux 5.10 (`*_510`) call no helper and use no instruction that 5.10
//! lacks. Nothing here needs a 5.10 kernel, which this machine cannot
//! boot: helper ids are numbered in the order helpers were added to the
//! kernel, and atomics beyond the old `BPF_XADD` are visible in the
//! instruction's immediate.

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use sipscope::capture::live::ebpf_object;
use sipscope_common::names;

/// The last helper of Linux 5.10: `BPF_FUNC_redirect_peer` (155);
/// `bpf_task_storage_get` (156) came in 5.11.
const LAST_HELPER_5_10: i32 = 155;
/// `bpf_xdp_load_bytes` (5.18).
const XDP_LOAD_BYTES: i32 = 189;

const BPF_JMP: u8 = 0x05;
const BPF_CALL: u8 = 0x80;
const BPF_STX: u8 = 0x03;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_PSEUDO_CALL: u8 = 1;
/// `BPF_ATOMIC` with imm `BPF_ADD` (0) is the old `BPF_XADD` (any kernel);
/// every other immediate (fetch, and/or/xor, xchg, cmpxchg) is 5.12+.
const BPF_ADD: i32 = 0;

/// What a program uses that a given kernel might lack.
#[derive(Debug, Default)]
struct Uses {
    /// Helper ids called.
    helpers: Vec<i32>,
    /// Immediates of BPF_ATOMIC instructions other than plain add.
    atomics: Vec<i32>,
}

/// Decodes the instructions of `name` (and of every `.text` function, which
/// bpf-to-bpf calls may reach: conservative).
fn uses(name: &str) -> Uses {
    let elf = object::File::parse(ebpf_object()).expect("the eBPF object is ELF");
    let symbol = elf
        .symbols()
        .find(|s| s.name() == Ok(name) && s.kind() == SymbolKind::Text)
        .unwrap_or_else(|| panic!("program {name} missing from the object"));
    let section = elf
        .section_by_index(
            symbol
                .section_index()
                .expect("a program lives in a section"),
        )
        .unwrap();
    let data = section.data().unwrap();
    let start = symbol.address() - section.address();
    let code = &data[start as usize..(start + symbol.size()) as usize];
    let mut out = Uses::default();
    let calls_text = scan(code, &mut out);
    if calls_text && let Some(text) = elf.section_by_name(".text") {
        scan(text.data().unwrap(), &mut out);
    }
    out
}

/// Adds what `code` uses to `out`; true if it makes bpf-to-bpf calls.
fn scan(code: &[u8], out: &mut Uses) -> bool {
    let mut pseudo_calls = false;
    let mut i = 0;
    while i + 8 <= code.len() {
        let insn = &code[i..i + 8];
        let op = insn[0];
        let src = insn[1] >> 4;
        let imm = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
        if op == BPF_JMP | BPF_CALL {
            if src == BPF_PSEUDO_CALL {
                pseudo_calls = true;
            } else if src == 0 {
                out.helpers.push(imm);
            }
        }
        if op & 0x07 == BPF_STX && op & 0xe0 == BPF_ATOMIC && imm != BPF_ADD {
            out.atomics.push(imm);
        }
        // A 64-bit immediate load takes two instruction slots.
        i += if op == 0x18 { 16 } else { 8 };
    }
    pseudo_calls
}

#[test]
fn programs_for_linux_5_10_use_only_what_5_10_has() {
    for name in [names::TC_INGRESS_510, names::TC_EGRESS_510] {
        let u = uses(name);
        assert!(!u.helpers.is_empty(), "{name}: no helper calls decoded");
        let newer: Vec<i32> = u
            .helpers
            .iter()
            .copied()
            .filter(|&h| h > LAST_HELPER_5_10)
            .collect();
        assert!(
            newer.is_empty(),
            "{name} calls helpers newer than Linux 5.10: {newer:?}"
        );
        assert!(
            u.atomics.is_empty(),
            "{name} uses BPF atomics of Linux 5.12+ (imm {:#x?})",
            u.atomics
        );
    }
}

/// The check above can fail: the variants for newer kernels use exactly
/// what it looks for.
#[test]
fn the_static_check_sees_newer_helpers_and_atomics() {
    let xdp = uses(names::XDP_INGRESS);
    assert!(
        xdp.helpers.contains(&XDP_LOAD_BYTES),
        "bpf_xdp_load_bytes not seen in {}: {:?}",
        names::XDP_INGRESS,
        xdp.helpers
    );
    for name in [names::XDP_INGRESS, names::TC_INGRESS, names::TC_EGRESS] {
        assert!(
            !uses(name).atomics.is_empty(),
            "{name}: the compare-and-exchange of the shared flow lock not seen"
        );
    }
}
