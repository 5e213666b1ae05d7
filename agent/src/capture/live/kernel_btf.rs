//! What the drop tracer needs to know about the running kernel, read from
//! its BTF (`/sys/kernel/btf/vmlinux`) with btf-rs: the byte offsets of the
//! `sk_buff`, `net_device`, `dst_entry`, `sock` and `net` fields it reads,
//! and the numbering of `enum skb_drop_reason`, which changes between
//! kernel versions (values are inserted in the middle).
//!
//! Resolving offsets here and passing them in a map lets one eBPF object
//! run on many kernels without CO-RE relocations (which the Rust eBPF
//! toolchain does not emit).

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use sipscope_common::DropConfig;

/// Why the kernel's BTF cannot drive the drop tracer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BtfError {
    #[error("reading kernel BTF from {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error(
        "kernel BTF has no `enum skb_drop_reason`: kfree_skb reports drop reasons only \
         since Linux 5.17"
    )]
    NoDropReasons,
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: {strukt}.{member} is {found} bytes, expected {expected}")]
    UnexpectedSize {
        strukt: String,
        member: String,
        found: usize,
        expected: usize,
    },
    #[error("kernel BTF: {0}")]
    Malformed(String),
}

/// A drop reason number and its name on the running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonName {
    pub code: u32,
    /// Lower case without the `SKB_DROP_REASON_` prefix: `netfilter_drop`.
    pub name: String,
}

/// The parts of the kernel's BTF the drop tracer uses.
pub(crate) struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub(crate) const PATH: &'static str = "/sys/kernel/btf/vmlinux";

    pub(crate) fn open(path: &Path) -> Result<Self, BtfError> {
        let read = |source| BtfError::Read {
            path: path.display().to_string(),
            source,
        };
        // One read of the whole file (about 5 MB): `Btf::from_file` parses
        // through a seeking reader, which cost 125k lseek calls at start.
        let bytes = std::fs::read(path).map_err(|e| read(e.into()))?;
        let btf = Btf::from_bytes(&bytes).map_err(read)?;
        Ok(Self { btf })
    }

    /// Every value of `enum skb_drop_reason`, in kernel order.
    pub(crate) fn drop_reasons(&self) -> Result<Vec<ReasonName>, BtfError> {
        let types = self
            .btf
            .resolve_types_by_name("skb_drop_reason")
            .map_err(|_| BtfError::NoDropReasons)?;
        for ty in types {
            let mut out = Vec::new();
            match ty {
                Type::Enum(e) => {
                    for m in &e.members {
                        out.push((self.name(m)?, u64::from(m.val())));
                    }
                }
                Type::Enum64(e) => {
                    for m in &e.members {
                        out.push((self.name(m)?, m.val()));
                    }
                }
                _ => continue,
            }
            return Ok(out
                .into_iter()
                .filter_map(|(name, val)| {
                    let code = u32::try_from(val).ok()?;
                    Some(ReasonName {
                        code,
                        name: reason_display_name(&name),
                    })
                })
                .collect());
        }
        Err(BtfError::NoDropReasons)
    }

    /// Fills the offsets of `cfg` (not the filter fields).
    pub(crate) fn fill_offsets(&self, cfg: &mut DropConfig) -> Result<(), BtfError> {
        cfg.skb_head = self.offset("sk_buff", &["head"], 8)?;
        cfg.skb_network_header = self.offset("sk_buff", &["network_header"], 2)?;
        cfg.skb_tail = self.offset("sk_buff", &["tail"], 4)?;
        cfg.skb_len = self.offset("sk_buff", &["len"], 4)?;
        cfg.skb_dev = self.offset("sk_buff", &["dev"], 8)?;
        cfg.skb_protocol = self.offset("sk_buff", &["protocol"], 2)?;
        cfg.skb_iif = self.offset("sk_buff", &["skb_iif"], 4)?;
        cfg.skb_refdst = self.offset("sk_buff", &["_skb_refdst"], 8)?;
        cfg.skb_sk = self.offset("sk_buff", &["sk"], 8)?;
        cfg.dst_dev = self.offset("dst_entry", &["dev"], 8)?;
        cfg.dev_ifindex = self.offset("net_device", &["ifindex"], 4)?;
        // possible_net_t is a struct holding one `struct net *`.
        cfg.dev_nd_net = self.offset("net_device", &["nd_net"], 8)?;
        cfg.sk_net = self.offset("sock", &["__sk_common", "skc_net"], 8)?;
        cfg.net_inum = self.offset("net", &["ns", "inum"], 4)?;
        Ok(())
    }

    fn name(&self, t: &dyn BtfType) -> Result<String, BtfError> {
        self.btf
            .resolve_name(t)
            .map_err(|e| BtfError::Malformed(e.to_string()))
    }

    /// The named struct (not a forward declaration).
    fn strukt(&self, name: &str) -> Result<btf_rs::Struct, BtfError> {
        let types = self
            .btf
            .resolve_types_by_name(name)
            .map_err(|_| BtfError::NoStruct(name.to_owned()))?;
        types
            .into_iter()
            .find_map(|t| match t {
                Type::Struct(s) => Some(s),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))
    }

    /// Strips typedefs and qualifiers.
    fn resolve(&self, mut ty: Type) -> Result<Type, BtfError> {
        for _ in 0..32 {
            ty = match ty {
                Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                    let inner = ty.as_btf_type().expect("qualifier has a type");
                    self.btf
                        .resolve_chained_type(inner)
                        .map_err(|e| BtfError::Malformed(e.to_string()))?
                }
                Type::TypeTag(ref t) => self
                    .btf
                    .resolve_chained_type(t)
                    .map_err(|e| BtfError::Malformed(e.to_string()))?,
                other => return Ok(other),
            };
        }
        Err(BtfError::Malformed("typedef chain too long".into()))
    }

    fn size_of(&self, ty: &Type) -> Option<usize> {
        match ty {
            Type::Int(i) => Some(i.size()),
            Type::Ptr(_) => Some(8),
            Type::Struct(s) | Type::Union(s) => Some(s.size()),
            Type::Enum(e) => Some(e.size()),
            _ => None,
        }
    }

    /// Finds `member` in `s`, looking through anonymous struct/union
    /// members (where `sk_buff.dev`, `.tail`'s neighbours and many others
    /// live). Returns the bit offset and the member's resolved type.
    fn find_member(&self, s: &btf_rs::Struct, member: &str, depth: u32) -> Option<(u32, Type)> {
        if depth > 8 {
            return None;
        }
        for m in &s.members {
            let name = self.name(m).ok()?;
            let ty = self.btf.resolve_chained_type(m).ok()?;
            let ty = self.resolve(ty).ok()?;
            if name == member {
                if m.bitfield_size().is_some_and(|b| b != 0) {
                    return None;
                }
                return Some((m.bit_offset(), ty));
            }
            if name.is_empty()
                && let Type::Struct(inner) | Type::Union(inner) = &ty
                && let Some((off, t)) = self.find_member(inner, member, depth + 1)
            {
                return Some((m.bit_offset() + off, t));
            }
        }
        None
    }

    /// Byte offset of `path` (member, member of that member, ...) inside
    /// `strukt`; the last member must be `size` bytes.
    fn offset(&self, strukt: &str, path: &[&str], size: usize) -> Result<u32, BtfError> {
        let mut s = self.strukt(strukt)?;
        let mut bits = 0u32;
        let no_member = |m: &str| BtfError::NoMember {
            strukt: strukt.to_owned(),
            member: m.to_owned(),
        };
        for (i, member) in path.iter().enumerate() {
            let (off, ty) = self
                .find_member(&s, member, 0)
                .ok_or_else(|| no_member(member))?;
            bits += off;
            if i + 1 == path.len() {
                let found = self.size_of(&ty).unwrap_or(0);
                if found != size {
                    return Err(BtfError::UnexpectedSize {
                        strukt: strukt.to_owned(),
                        member: path.join("."),
                        found,
                        expected: size,
                    });
                }
            } else {
                s = match ty {
                    Type::Struct(inner) | Type::Union(inner) => inner,
                    _ => return Err(no_member(member)),
                };
            }
        }
        if !bits.is_multiple_of(8) {
            return Err(BtfError::Malformed(format!(
                "{strukt}.{} is not byte aligned",
                path.join(".")
            )));
        }
        Ok(bits / 8)
    }
}

/// `SKB_DROP_REASON_NETFILTER_DROP` -> `netfilter_drop`.
pub(crate) fn reason_display_name(enum_name: &str) -> String {
    enum_name
        .strip_prefix("SKB_DROP_REASON_")
        .unwrap_or(enum_name)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_lose_their_prefix_and_case() {
        assert_eq!(
            reason_display_name("SKB_DROP_REASON_NETFILTER_DROP"),
            "netfilter_drop"
        );
        assert_eq!(reason_display_name("SKB_CONSUMED"), "skb_consumed");
    }

    /// Against the running kernel's BTF (every kernel this agent supports
    /// has one; the live capture refuses to start without it).
    #[test]
    fn running_kernel_btf_gives_plausible_offsets_and_reasons() {
        let path = Path::new(KernelBtf::PATH);
        if !path.exists() {
            eprintln!("skipped: {} missing", path.display());
            return;
        }
        let btf = KernelBtf::open(path).expect("parsing kernel BTF");
        let mut cfg = DropConfig::default();
        btf.fill_offsets(&mut cfg).expect("offsets");
        // Distinct fields of sk_buff cannot share an offset.
        let skb = [
            cfg.skb_head,
            cfg.skb_network_header,
            cfg.skb_tail,
            cfg.skb_len,
            cfg.skb_dev,
            cfg.skb_protocol,
            cfg.skb_iif,
            cfg.skb_refdst,
            cfg.skb_sk,
        ];
        let mut sorted = skb.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), skb.len(), "{cfg:?}");
        // sk_buff is a few hundred bytes; every field lies inside it.
        assert!(skb.iter().all(|&o| o < 512), "{cfg:?}");
        let reasons = btf.drop_reasons().expect("drop reasons");
        let find = |n: &str| reasons.iter().find(|r| r.name == n).map(|r| r.code);
        assert!(find("netfilter_drop").is_some(), "{reasons:?}");
        assert!(find("no_socket").is_some());
    }
}
