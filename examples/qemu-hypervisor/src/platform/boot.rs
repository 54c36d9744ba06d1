//! How an unmodified Linux kernel reaches the guest: the memory layout,
//! the boot-info block the xtask fills, and the arm64 `Image` header
//! (Linux's `Documentation/arch/arm64/booting.rst`).
//!
//! QEMU cannot pass files to a bare-metal hypervisor, so `cargo xtask
//! linux` places them with QEMU's generic loader at fixed guest-physical
//! addresses (IPA = PA, identity-mapped by stage 2):
//!
//! | what | where | by |
//! |---|---|---|
//! | configuration word (scenario `linux`) | [`CONFIG_ADDR`](crate::config::CONFIG_ADDR) | `-device loader,data=...` |
//! | boot-info block: [`BOOT_INFO_MAGIC`], initramfs size, [`Smp`] word (three `u32`) | [`BOOT_INFO_ADDR`] | three `-device loader,data=...,data-len=4` |
//! | kernel `Image` (raw) | [`KERNEL_ADDR`] | `-device loader,file=Image,addr=...,force-raw=on` |
//! | initramfs (raw `newc` cpio) | [`INITRD_ADDR`] | `-device loader,file=...,addr=...,force-raw=on` |
//! | device tree | [`DTB_ADDR`] | written by the hypervisor |
//!
//! The guest's RAM is [`RAM_BASE`]..+[`RAM_SIZE`] (QEMU needs `-m 512M`).
//! The kernel is entered at its first byte at EL1, MMU off, interrupts
//! masked, `x0` = [`DTB_ADDR`], `x1..x3` = 0.

use core::fmt;

/// Where the boot-info block is (beside the configuration word, outside
/// the hypervisor image and the guest's RAM).
pub const BOOT_INFO_ADDR: usize = 0x4700_0100;
/// The block's first word: `"LNXB"` in memory order.
pub const BOOT_INFO_MAGIC: u32 = u32::from_le_bytes(*b"LNXB");
/// The guest's RAM: base (2 MiB aligned)...
pub const RAM_BASE: u64 = 0x4800_0000;
/// ...and size.
pub const RAM_SIZE: u64 = 0x1000_0000;
/// The kernel `Image`: the start of the guest's RAM (a 2 MiB aligned base
/// plus a `text_offset` of 0).
pub const KERNEL_ADDR: u64 = RAM_BASE;
/// The device tree: a 2 MiB region of its own below the initramfs.
pub const DTB_ADDR: u64 = 0x4fe0_0000;
/// The most the device tree may take (the booting protocol's limit).
pub const DTB_MAX: u64 = 0x20_0000;
/// The initramfs.
pub const INITRD_ADDR: u64 = 0x5000_0000;
/// The largest initramfs: up to the end of the guest's RAM, less 64 MiB
/// left for the kernel's own allocations above it.
pub const INITRD_MAX: u64 = RAM_BASE + RAM_SIZE - INITRD_ADDR - 0x0400_0000;

// The layout holds together: 2 MiB aligned RAM and tree, the tree's
// region below the initramfs, the initramfs inside RAM, the boot-info
// block outside it.
const _: () = {
    assert!(RAM_BASE.is_multiple_of(0x20_0000) && DTB_ADDR.is_multiple_of(0x20_0000));
    assert!(DTB_ADDR + DTB_MAX <= INITRD_ADDR);
    assert!(INITRD_ADDR + INITRD_MAX <= RAM_BASE + RAM_SIZE);
    assert!((BOOT_INFO_ADDR as u64) < RAM_BASE);
};

/// The boot-info block's third word (at [`BOOT_INFO_ADDR`] + 8): bits 7:0
/// the guest's vCPUs, bits 15:8 the physical CPUs they run on (QEMU
/// `-smp`), 0 meaning 1 in both; the other bits 0. A block without the
/// word (QEMU's RAM reads 0) is 1 vCPU on 1 CPU.
pub const SMP_WORD_OFFSET: usize = 8;
/// The most vCPUs a Linux guest gets.
pub const MAX_VCPUS: usize = 2;

/// How many vCPUs the guest has and on how many physical CPUs: all on CPU
/// 0 (time-sliced, put/load at every switch), or one per CPU (vCPU n on
/// CPU n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smp {
    /// The guest's vCPUs, 1..=[`MAX_VCPUS`].
    pub vcpus: usize,
    /// The physical CPUs they run on: 1, or `vcpus`.
    pub host_cpus: usize,
}

impl Smp {
    /// One vCPU on one CPU.
    pub const ONE: Self = Self {
        vcpus: 1,
        host_cpus: 1,
    };

    /// Decodes the [`SMP_WORD_OFFSET`] word.
    ///
    /// # Errors
    ///
    /// [`BootError::Smp`]: more than [`MAX_VCPUS`] vCPUs, a CPU count
    /// other than 1 or the vCPU count, or reserved bits set.
    pub fn decode(word: u32) -> Result<Self, BootError> {
        let at_least_one = |n: u32| usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        let vcpus = at_least_one(word & 0xff);
        let host_cpus = at_least_one((word >> 8) & 0xff);
        if word >> 16 != 0 || vcpus > MAX_VCPUS || (host_cpus != 1 && host_cpus != vcpus) {
            return Err(BootError::Smp(word));
        }
        Ok(Self { vcpus, host_cpus })
    }

    /// The physical CPU vCPU `vcpu` runs on.
    #[must_use]
    pub const fn host_cpu_of(&self, vcpu: usize) -> usize {
        if self.host_cpus == 1 { 0 } else { vcpu }
    }
}

/// What the boot-info block says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// The initramfs's size in bytes (0: none).
    pub initrd_size: u64,
}

/// A boot that cannot go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BootError {
    /// The boot-info block is missing (no magic).
    NoBootInfo(u32),
    /// The initramfs is larger than [`INITRD_MAX`].
    InitrdTooLarge(u64),
    /// No `"ARM\x64"` magic: not an arm64 `Image` (a compressed or EFI
    /// zboot kernel, or nothing loaded).
    NotAnImage,
    /// A big-endian kernel.
    BigEndian,
    /// `image_size` is 0: a kernel older than 3.17.
    NoImageSize,
    /// The kernel's `text_offset` does not put it at [`KERNEL_ADDR`].
    TextOffset(u64),
    /// The kernel's `image_size` runs into the device tree.
    TooLarge(u64),
    /// The [`Smp`] word asks for what this hypervisor cannot give.
    Smp(u32),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBootInfo(word) => write!(
                f,
                "no boot-info block at {BOOT_INFO_ADDR:#x} (found {word:#010x}, want \
                 {BOOT_INFO_MAGIC:#010x}): run the Linux guest with `cargo xtask linux`"
            ),
            Self::InitrdTooLarge(n) => write!(
                f,
                "the initramfs is {n} bytes; at most {INITRD_MAX} fit at {INITRD_ADDR:#x}"
            ),
            Self::NotAnImage => write!(
                f,
                "no arm64 Image at {KERNEL_ADDR:#x} (magic \"ARM\\x64\" missing): is the kernel \
                 loaded there, and uncompressed?"
            ),
            Self::BigEndian => f.write_str("the kernel is big-endian"),
            Self::NoImageSize => f.write_str("the kernel's image_size is 0 (older than 3.17)"),
            Self::TextOffset(t) => write!(
                f,
                "the kernel's text_offset is {t:#x}; this layout needs 0 (Linux 5.10 and later)"
            ),
            Self::Smp(word) => write!(
                f,
                "the boot-info SMP word {word:#x} asks for more than {MAX_VCPUS} vCPUs, or a CPU \
                 count other than 1 or the vCPU count"
            ),
            Self::TooLarge(n) => write!(
                f,
                "the kernel's image_size {n:#x} from {KERNEL_ADDR:#x} runs into the device tree \
                 at {DTB_ADDR:#x}"
            ),
        }
    }
}

impl core::error::Error for BootError {}

impl BootInfo {
    /// Reads the block's two words.
    ///
    /// # Errors
    ///
    /// [`BootError::NoBootInfo`], [`BootError::InitrdTooLarge`].
    pub fn decode(magic: u32, initrd_size: u32) -> Result<Self, BootError> {
        if magic != BOOT_INFO_MAGIC {
            return Err(BootError::NoBootInfo(magic));
        }
        let initrd_size = u64::from(initrd_size);
        if initrd_size > INITRD_MAX {
            return Err(BootError::InitrdTooLarge(initrd_size));
        }
        Ok(Self { initrd_size })
    }

    /// The initramfs's guest-physical range, start and end, if there is
    /// one.
    #[must_use]
    pub const fn initrd(&self) -> Option<(u64, u64)> {
        if self.initrd_size == 0 {
            None
        } else {
            Some((INITRD_ADDR, INITRD_ADDR + self.initrd_size))
        }
    }
}

/// The arm64 `Image` header fields the boot needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Where the image goes above a 2 MiB aligned base.
    pub text_offset: u64,
    /// How much memory from its start the kernel needs (BSS included).
    pub image_size: u64,
    /// Bit 0 big-endian, bits 2:1 page size, bit 3 placement.
    pub flags: u64,
}

impl ImageHeader {
    /// Parses the header's first 64 bytes.
    ///
    /// # Errors
    ///
    /// [`BootError::NotAnImage`], [`BootError::BigEndian`],
    /// [`BootError::NoImageSize`].
    pub fn parse(head: &[u8; 64]) -> Result<Self, BootError> {
        let word = |at: usize| {
            head.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        if head.get(56..60) != Some(b"ARM\x64".as_slice()) {
            return Err(BootError::NotAnImage);
        }
        let header = Self {
            text_offset: word(8),
            image_size: word(16),
            flags: word(24),
        };
        if header.flags & 1 != 0 {
            return Err(BootError::BigEndian);
        }
        if header.image_size == 0 {
            return Err(BootError::NoImageSize);
        }
        Ok(header)
    }

    /// Checks the kernel fits this layout: at [`KERNEL_ADDR`] (so
    /// `text_offset` 0) and ending below [`DTB_ADDR`].
    ///
    /// # Errors
    ///
    /// [`BootError::TextOffset`], [`BootError::TooLarge`].
    pub fn check_layout(&self) -> Result<(), BootError> {
        if self.text_offset != 0 {
            return Err(BootError::TextOffset(self.text_offset));
        }
        match KERNEL_ADDR.checked_add(self.image_size) {
            Some(end) if end <= DTB_ADDR => Ok(()),
            _ => Err(BootError::TooLarge(self.image_size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smp_word_picks_vcpus_and_cpus() {
        assert_eq!(Smp::decode(0), Ok(Smp::ONE));
        assert_eq!(Smp::decode(0x0101), Ok(Smp::ONE));
        let sliced = Smp::decode(0x0102).unwrap();
        assert_eq!((sliced.vcpus, sliced.host_cpus), (2, 1));
        assert_eq!(sliced.host_cpu_of(1), 0);
        let spread = Smp::decode(0x0202).unwrap();
        assert_eq!((spread.vcpus, spread.host_cpus), (2, 2));
        assert_eq!(spread.host_cpu_of(1), 1);
        for bad in [0x03, 0x0201, 0x0302, 0x1_0001] {
            assert_eq!(Smp::decode(bad), Err(BootError::Smp(bad)), "{bad:#x}");
        }
    }

    fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0_u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn the_magic_is_lnxb_in_memory_order() {
        assert_eq!(BOOT_INFO_MAGIC, 0x4258_4e4c);
        assert_eq!(BOOT_INFO_MAGIC.to_le_bytes(), *b"LNXB");
    }

    #[test]
    fn a_debian_header_parses_and_fits() {
        // Debian 12's 6.1 kernel: text_offset 0, image_size 0x2010000,
        // flags 0xa (little-endian, 4K pages, anywhere in RAM).
        let h = ImageHeader::parse(&header(0, 0x201_0000, 0xa)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.image_size, 0x201_0000);
        assert_eq!(h.check_layout(), Ok(()));
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut zboot = header(0, 0x100_0000, 0xa);
        zboot[56] = b'M';
        assert_eq!(ImageHeader::parse(&zboot), Err(BootError::NotAnImage));
        assert_eq!(
            ImageHeader::parse(&header(0, 1, 1)),
            Err(BootError::BigEndian)
        );
        assert_eq!(
            ImageHeader::parse(&header(0x8_0000, 0, 0)),
            Err(BootError::NoImageSize)
        );
        let old = ImageHeader::parse(&header(0x8_0000, 0x100_0000, 0xa));
        assert_eq!(
            old.and_then(|h| h.check_layout()),
            Err(BootError::TextOffset(0x8_0000))
        );
        let huge = ImageHeader::parse(&header(0, 0x800_0000, 0xa));
        assert_eq!(
            huge.and_then(|h| h.check_layout()),
            Err(BootError::TooLarge(0x800_0000))
        );
        let wrap = ImageHeader::parse(&header(0, u64::MAX, 0xa));
        assert_eq!(
            wrap.and_then(|h| h.check_layout()),
            Err(BootError::TooLarge(u64::MAX))
        );
    }

    #[test]
    fn boot_info_decodes() {
        assert_eq!(
            BootInfo::decode(BOOT_INFO_MAGIC, 0x1c_3456).map(|b| b.initrd()),
            Ok(Some((INITRD_ADDR, INITRD_ADDR + 0x1c_3456)))
        );
        assert_eq!(
            BootInfo::decode(BOOT_INFO_MAGIC, 0).map(|b| b.initrd()),
            Ok(None)
        );
        assert_eq!(BootInfo::decode(0, 5), Err(BootError::NoBootInfo(0)));
        assert_eq!(
            BootInfo::decode(BOOT_INFO_MAGIC, u32::MAX),
            Err(BootError::InitrdTooLarge(u64::from(u32::MAX)))
        );
    }
}
