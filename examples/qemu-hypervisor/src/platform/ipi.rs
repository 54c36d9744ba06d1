//! IPIs between the Linux guest's vCPUs: a [`Mailbox`] per target vCPU.
//!
//! A vCPU that sends an SGI (a trapped `ICC_SGI1R_EL1` write, a
//! `GICD_SGIR` store) posts it into each target's mailbox, on whatever CPU
//! it runs; the run loop that owns the target takes the mailbox before
//! every entry and moves its SGIs into the target's list registers. SGIs
//! are edge-triggered: the same SGI from the same source posted twice
//! before it is taken is one interrupt, as on a GIC.

use core::sync::atomic::{AtomicU32, Ordering};

/// The most source vCPUs a mailbox tells apart (one bit per source and
/// SGI in a 32-bit word).
pub const MAX_SOURCES: usize = 2;
/// SGIs per source: INTIDs 0..=15.
const SGIS: u32 = 16;

/// The SGIs posted to one vCPU and not yet taken: bit `16 * source + sgi`.
#[derive(Debug, Default)]
pub struct Mailbox(AtomicU32);

impl Mailbox {
    /// An empty mailbox.
    #[must_use]
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Posts SGI `sgi` from vCPU `source`. `false` (nothing posted) if
    /// `sgi` is above 15 or `source` not below [`MAX_SOURCES`].
    pub fn post(&self, source: usize, sgi: u32) -> bool {
        match bit(source, sgi) {
            Some(b) => {
                self.0.fetch_or(b, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    /// Takes SGIs back before they are delivered: every `sgi` whose bit
    /// is set in `sgis` (bit n = SGI n), from every source.
    pub fn withdraw(&self, sgis: u32) {
        let mut mask = 0_u32;
        for source in 0..MAX_SOURCES {
            for sgi in 0..SGIS {
                if sgis & (1 << sgi) != 0
                    && let Some(b) = bit(source, sgi)
                {
                    mask |= b;
                }
            }
        }
        self.0.fetch_and(!mask, Ordering::AcqRel);
    }

    /// Whether SGIs wait.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    /// Takes every SGI posted so far, as `(source, sgi)` pairs, source
    /// then SGI in increasing order. SGIs the caller cannot deliver yet
    /// go back with [`post`](Self::post).
    pub fn take(&self) -> Taken {
        Taken(self.0.swap(0, Ordering::AcqRel))
    }
}

/// The bit of `(source, sgi)`, if both are in range.
fn bit(source: usize, sgi: u32) -> Option<u32> {
    if sgi >= SGIS || source >= MAX_SOURCES {
        return None;
    }
    let shift = u32::try_from(source)
        .ok()?
        .checked_mul(SGIS)?
        .checked_add(sgi)?;
    1_u32.checked_shl(shift)
}

/// SGIs taken from a [`Mailbox`]: an iterator of `(source, sgi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taken(u32);

impl Iterator for Taken {
    type Item = (usize, u32);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0 == 0 {
            return None;
        }
        let n = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(((n / SGIS) as usize, n % SGIS))
    }
}

/// The vCPUs named in `targets` (bit n = vCPU n) among the first `vcpus`.
pub fn targets(targets: u32, vcpus: usize) -> impl Iterator<Item = usize> {
    (0..vcpus.min(32)).filter(move |&t| targets & (1 << t) != 0)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    #[test]
    fn posted_sgis_come_out_once_with_their_source() {
        let m = Mailbox::new();
        assert!(m.is_empty());
        assert!(m.post(1, 2));
        assert!(m.post(0, 15));
        assert!(m.post(0, 1));
        // The same SGI from the same source again before it is taken: one.
        assert!(m.post(1, 2));
        assert!(!m.is_empty());
        let taken: Vec<_> = m.take().collect();
        assert_eq!(taken, [(0, 1), (0, 15), (1, 2)]);
        assert!(m.is_empty());
        assert_eq!(m.take().count(), 0);
    }

    #[test]
    fn withdrawn_sgis_are_not_taken() {
        let m = Mailbox::new();
        assert!(m.post(0, 1));
        assert!(m.post(1, 1));
        assert!(m.post(1, 2));
        m.withdraw((1 << 1) | (1 << 16));
        let taken: Vec<_> = m.take().collect();
        assert_eq!(taken, [(1, 2)]);
        m.withdraw(u32::MAX);
        assert!(m.is_empty());
    }

    #[test]
    fn out_of_range_sgis_and_sources_are_refused() {
        let m = Mailbox::new();
        assert!(!m.post(0, 16));
        assert!(!m.post(MAX_SOURCES, 0));
        assert!(!m.post(usize::MAX, u32::MAX));
        assert!(m.is_empty());
    }

    #[test]
    fn posts_from_other_threads_are_all_taken() {
        let m = std::sync::Arc::new(Mailbox::new());
        let senders: Vec<_> = (0..MAX_SOURCES)
            .map(|source| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for sgi in 0..16 {
                        assert!(m.post(source, sgi));
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        for s in senders {
            s.join().unwrap();
        }
        seen.extend(m.take());
        assert_eq!(seen.len(), 16 * MAX_SOURCES);
    }

    #[test]
    fn targets_lists_the_named_vcpus_in_range() {
        assert_eq!(targets(0b110, 2).collect::<Vec<_>>(), [1]);
        assert_eq!(targets(0b11, 2).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(targets(u32::MAX, 40).count(), 32);
        assert_eq!(targets(0, 2).count(), 0);
    }
}
