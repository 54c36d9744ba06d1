//! Busy loops that keep every core of the machine busy while the QEMU
//! matrix runs (`--under-load`): a verdict must not depend on how fast
//! the host lets the guest run.
//!
//! The loops are threads of the xtask process, one per core
//! ([`std::thread::available_parallelism`]): they end with the process
//! whatever way it ends (a ctrl-c included), are stopped and joined when
//! the [`Load`] is dropped (on every return path, an error's included),
//! and each stops by itself after [`MAX_LOAD`] in any case.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a busy loop runs if nobody stops it.
pub(crate) const MAX_LOAD: Duration = Duration::from_secs(60 * 60);

/// Running busy loops; dropping it stops and joins them.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Load {
    /// Starts one busy loop per core.
    pub(crate) fn start() -> Load {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start_n(cores, MAX_LOAD)
    }

    fn start_n(loops: usize, limit: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..loops)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || spin(&stop, limit))
            })
            .collect();
        println!(
            "==> load: {loops} busy loop(s), one per core (at most {} s each)",
            limit.as_secs()
        );
        Load { stop, threads }
    }

    /// How many loops run.
    pub(crate) fn loops(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let rounds: u64 = self.threads.drain(..).filter_map(|t| t.join().ok()).sum();
        println!("==> load: busy loops stopped ({rounds} rounds of work done)");
    }
}

/// Spins until `stop` is set or `limit` has passed; returns the rounds it
/// ran, so that the work cannot be optimised away.
fn spin(stop: &AtomicBool, limit: Duration) -> u64 {
    let start = Instant::now();
    let mut rounds = 0_u64;
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
        for _ in 0..10_000 {
            // xorshift: cheap, and the optimiser cannot fold it away.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = black_box(x);
        }
        rounds += 1;
    }
    black_box(x);
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loops_run_until_dropped_and_stop_when_dropped() {
        let load = Load::start_n(2, MAX_LOAD);
        assert_eq!(load.loops(), 2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(load.threads.iter().all(|t| !t.is_finished()));
        let started = Instant::now();
        drop(load);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_loop_stops_by_itself_at_its_limit() {
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let rounds = spin(&stop, Duration::from_millis(30));
        assert!(rounds > 0);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
