//! The QEMU matrix: the example hypervisor (`examples/qemu-hypervisor`) on
//! every scenario x GICv3/GICv2 x non-VHE/VHE host, 40 runs per QEMU, each
//! passing only with QEMU's exit status and a `RESULT ... PASS` line for
//! that very run.
//!
//! It runs on the QEMUs this machine has: `qemu-system-aarch64` on `PATH`
//! (or `ARCH_TIMER_VIRT_QEMU=<path>` instead), and QEMU 10 if `cargo xtask`
//! has unpacked it under `<target>/qemu-10/`. What is missing (a QEMU, the
//! `aarch64-unknown-none` target) is skipped with a message saying what to
//! install, never silently. `ARCH_TIMER_VIRT_QEMU_TESTS=skip` skips it on
//! purpose: `cargo xtask test` does so for its host-test step and runs
//! the same matrix (this crate's `qemu::matrix`) in a step of its own,
//! after provisioning both QEMUs.

use std::path::PathBuf;

use arch_timer_virt_tests::qemu::{
    self, Qemu, build_command, image_path, matrix, say, target_dir, target_installed,
};

/// Says why (part of) the matrix does not run.
fn skip(why: &str) {
    say(&format!("qemu_matrix: SKIPPED {why}"));
}

/// The QEMUs to run on, each found and probed, or the reason it is not.
fn qemus() -> Vec<Result<Qemu, String>> {
    if let Some(path) = std::env::var_os("ARCH_TIMER_VIRT_QEMU") {
        return vec![Qemu::plain(PathBuf::from(path)).probe()];
    }
    let distro = Qemu::plain(PathBuf::from("qemu-system-aarch64"))
        .probe()
        .map_err(|e| {
            format!(
                "the distribution's QEMU ({e}): install it (Debian: `apt-get install \
                 qemu-system-arm`) or point ARCH_TIMER_VIRT_QEMU at a qemu-system-aarch64"
            )
        });
    // Relative to the workspace root, where cargo runs the build.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(target_dir())
        .join("qemu-10")
        .join("root");
    let backports = Qemu::unpacked_in(&root).and_then(Qemu::probe).map_err(|e| {
        format!(
            "QEMU 10 ({e}): `cargo xtask qemu-matrix --qemu 10` unpacks it under \
                 target/qemu-10/"
        )
    });
    vec![distro, backports]
}

#[test]
fn the_qemu_matrix_passes_on_every_qemu_here() {
    if std::env::var("ARCH_TIMER_VIRT_QEMU_TESTS").is_ok_and(|v| v == "skip") {
        skip(
            "(ARCH_TIMER_VIRT_QEMU_TESTS=skip: `cargo xtask test` runs the matrix in its own step)",
        );
        return;
    }
    let qemus: Vec<Qemu> = qemus()
        .into_iter()
        .filter_map(|q| q.map_err(|why| skip(&format!("on {why}"))).ok())
        .collect();
    if qemus.is_empty() {
        skip("entirely: no QEMU to run it on");
        return;
    }
    if !target_installed() {
        skip(&format!(
            "entirely: the Rust target {} is not installed (`rustup target add {}`)",
            qemu::TARGET,
            qemu::TARGET
        ));
        return;
    }
    // The hypervisor image, built from the workspace root (the target
    // directory there is the workspace's).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut build = build_command();
    build.current_dir(&root);
    say("qemu_matrix: building the example hypervisor for aarch64-unknown-none");
    let status = build.status().expect("cargo starts");
    assert!(
        status.success(),
        "cargo build of the example hypervisor failed"
    );
    let image = root.join(image_path());
    let mut failed = Vec::new();
    let mut summaries = Vec::new();
    for q in &qemus {
        let report = matrix(q, &image).unwrap_or_else(|e| panic!("{}: {e}", q.label()));
        summaries.push(report.summary());
        failed.extend(report.failed.iter().map(|f| format!("{} {f}", report.qemu)));
    }
    for summary in &summaries {
        say(&format!("qemu_matrix: {summary}"));
    }
    assert!(failed.is_empty(), "QEMU runs failed: {}", failed.join(", "));
}
