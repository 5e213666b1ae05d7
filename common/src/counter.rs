//! Per-CPU counter arrays: each program family counts into one
//! `PerCpuArray<u64>` whose slots an enum names. [`counter_slots!`] writes
//! such an enum once: its discriminants are the slot indices (the ABI),
//! `ALL` lists them in index order (checked at compile time), and each slot
//! has a stable `snake_case` name that userspace prints and tests parse.

/// The slots of one per-CPU counter array, for code that handles every
/// counter array alike (userspace sums each slot over CPUs).
pub trait CounterSlot: Copy + 'static {
    /// Every slot, in index order.
    const ALL: &'static [Self];
    /// The slot's index in the array.
    fn index(self) -> u32;
    /// Stable `snake_case` name.
    fn name(self) -> &'static str;
}

/// Defines a `#[repr(u32)]` counter enum with `COUNT`, `ALL`, `name()` and
/// [`CounterSlot`]: `Variant = index => "name",` per slot.
macro_rules! counter_slots {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $index:literal => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $index, )+
        }

        impl $name {
            /// Every slot, in index order.
            pub const ALL: [$name; [$($label),+].len()] = [$(Self::$variant),+];
            /// Entries of the per-CPU array.
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// Stable `snake_case` name (printed, parsed by tests).
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                }
            }
        }

        // `ALL[i]` is slot i: no gap, no slot listed twice.
        const _: () = {
            let mut i = 0;
            while i < $name::ALL.len() {
                assert!($name::ALL[i] as usize == i);
                i += 1;
            }
        };

        impl $crate::CounterSlot for $name {
            const ALL: &'static [Self] = &Self::ALL;
            #[inline(always)]
            fn index(self) -> u32 {
                self as u32
            }
            fn name(self) -> &'static str {
                Self::name(self)
            }
        }
    };
}
pub(crate) use counter_slots;
