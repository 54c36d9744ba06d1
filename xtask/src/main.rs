//! Project automation for arch-timer-virt: `cargo xtask test`, `cargo xtask
//! demo`, `cargo xtask bench`. Run `cargo xtask help` for the list.

use std::env;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod backports;
mod bench;
mod linux;
mod load;
mod msrv;
mod package;
mod qemu;

/// The bare-metal target every `no_std` crate is built and linted for.
const TARGET: &str = "aarch64-unknown-none";
/// The crates that must build with no std for [`TARGET`].
const NO_STD_CRATES: [&str; 5] = [
    "arch-timer-virt",
    "arch-timer-virt-aarch64",
    "arch-timer-virt-gicv3",
    "arch-timer-virt-gicv2",
    "hypervisor-skeleton",
];
/// The bare-metal example, built for [`TARGET`] only.
const EXAMPLE: &str = "qemu-hypervisor";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    // Paths on the command line are the caller's; resolve them before
    // moving to the workspace root.
    let caller_dir = env::current_dir().unwrap_or_default();
    // Run from the workspace root whatever the caller's directory.
    if let Some(root) = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent()
        && let Err(e) = env::set_current_dir(root)
    {
        eprintln!("xtask: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let args: Vec<String> = env::args().skip(1).collect();
    start_phases();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..], &caller_dir),
        Some("demo") => demo(&args[1..], &caller_dir),
        Some("qemu") => qemu_run(&args[1..], &caller_dir),
        Some("qemu-matrix") => qemu_matrix(&args[1..], &caller_dir),
        Some("bench") => bench::bench(&args[1..], &caller_dir),
        Some("linux") => linux::linux(&args[1..], &caller_dir),
        Some("msrv") => msrv::check(),
        Some("package") => package::check(),
        Some("help" | "--help" | "-h") | None => {
            print!("{}", HELP);
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    print_phases();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "\
usage: cargo xtask <command>

  test    everything CI checks: formatting, MSRV (stated and built),
          package contents, clippy (host and aarch64-unknown-none), host
          tests, no_std builds, docs, and the QEMU matrix and the Linux
          guest on QEMU 7.2 and QEMU 10 [--qemu 7|10|PATH]... [--under-load]
  demo    boot the example hypervisor under QEMU and show a guest's
          forwarded timer interrupts (installs QEMU when missing, as root)
          [--qemu 7|10|PATH]; `demo --host`: one vCPU through its whole
          timer lifecycle on the host model, each step with the hardware
          accesses it made; `demo --linux`: boot Linux and show its
          console (takes the options of `linux`)
  qemu    one QEMU run of the example hypervisor:
          [--scenario NAME|N] [--gic 2|3] [--mode vhe|nvhe] [--smp N]
          [--guest FILE]  (an external guest image: ELF, or raw loaded
          at 0x4800_0000; see the example's README for the guest ABI)
          [--qemu 7|10|PATH] [--under-load]
  qemu-matrix
          the QEMU matrix only (every scenario x GICv3/GICv2 x non-VHE/VHE,
          then the Linux guest on GICv3/GICv2 x non-VHE/VHE)
          [--qemu 7|10|PATH]... [--under-load]
  linux   boot Debian's unmodified arm64 kernel under the example hypervisor,
          its /init running the project's timer check program, and report
          how far it got: [--gic 2|3] [--mode vhe|nvhe] [--smp 1|2]
          [--host-cpus 1|N] (N vCPUs one per CPU, or all on 1 CPU)
          [--qemu 7|10|PATH] [--under-load] [--root DIR]
          [--timeout SECONDS] [--provision-only]
          (provisions the kernel and busybox-static with apt, as root)

  QEMU options:
  --qemu 7      the distribution's qemu-system-aarch64 (7.2 on Debian 12;
                installed with apt as root when missing)
  --qemu 10     QEMU 10 from Debian 12's bookworm-backports, downloaded and
                unpacked under target/qemu-10/ (never installed; adding the
                apt source needs root once)
  --qemu PATH   any other qemu-system-aarch64
                (test and qemu-matrix: both 7 and 10 by default; --qemu
                may be given more than once)
  --under-load  keep every core busy with one busy loop per core while
                QEMU runs; the pass rules do not change
  msrv    check the stated rust-version against edition 2024 and
          every library dependency's own rust-version, then build the
          libraries with that toolchain (host, all features, and
          aarch64-unknown-none) from the locked Cargo.lock
  package check that `cargo package` of each library crate lists
          LICENSE-MIT, LICENSE-APACHE, CHANGELOG.md and its README (the
          same as the root files) and that it has its documentation metadata
  bench   the example hypervisor's perf scenario under QEMU -icount shift=0
          on GICv3/GICv2 x non-VHE/VHE: EL2 and EL1 instructions (PMU),
          the library's timer register accesses and GIC calls per round
          trip of each path, beside the eager baseline (the example's
          `eager` feature) and the ratio eager / library, one table per
          configuration; fails if the quiet exit (line low) makes a timer
          register access [--qemu 7|10|PATH]... [--twice] (each
          configuration twice: the counts must be identical)
          [--library-only] (no eager build); `bench --quick`: the library
          on GICv3 non-VHE only, as `test` runs it;
          `bench --model`: the hardware-access and timing report: lazy
          library vs eager save/restore on the host model, memory per vCPU
          and VM, and the core's code size for aarch64-unknown-none (needs
          llvm-size)
";

/// The QEMUs `test` and `qemu-matrix` run by default.
const BOTH_QEMUS: [qemu::Choice; 2] = [qemu::Choice::Distro, qemu::Choice::Backports];

fn test(args: &[String], caller_dir: &Path) -> Result {
    let (options, rest) = qemu::Options::take(args, caller_dir, &BOTH_QEMUS)?;
    no_more_args(&rest)?;
    ensure_target()?;
    step("format", cargo(&["fmt", "--all", "--", "--check"]))?;
    step("msrv", msrv::check())?;
    step("package contents", package::check())?;
    step("README run loop is the compiled one", readme_in_sync())?;
    // The example's host build is its configuration module and tests.
    let host = ["--workspace"];
    step(
        "clippy (host)",
        cargo(
            &[
                &["clippy"][..],
                &host,
                &["--all-targets", "--all-features", "--", "-D", "warnings"],
            ]
            .concat(),
        ),
    )?;
    let mut bare = vec!["clippy", "--target", TARGET, "--lib"];
    for c in NO_STD_CRATES {
        bare.extend(["-p", c]);
    }
    bare.extend(["--", "-D", "warnings"]);
    step("clippy (aarch64-unknown-none)", cargo(&bare))?;
    // The QEMU matrix test of `arch-timer-virt-tests` skips itself here:
    // the matrix runs below, on both QEMUs, with the same code.
    step(
        "tests (host)",
        cargo_env(
            &[&["test"][..], &host, &["--all-features"]].concat(),
            &[("ARCH_TIMER_VIRT_QEMU_TESTS", "skip")],
        ),
    )?;
    let mut build = vec!["build", "--target", TARGET, "--lib"];
    for c in NO_STD_CRATES {
        build.extend(["-p", c]);
    }
    step("build (aarch64-unknown-none, no std)", cargo(&build))?;
    step(
        "build core (aarch64-unknown-none, release)",
        cargo(&[
            "build",
            "--release",
            "--target",
            TARGET,
            "-p",
            "arch-timer-virt",
        ]),
    )?;
    step(
        "docs (host)",
        cargo_env(
            &[
                &["doc", "--no-deps", "--all-features"][..],
                &host,
                &["--exclude", "xtask"],
            ]
            .concat(),
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    )?;
    let mut docs = vec!["doc", "--no-deps", "--target", TARGET];
    for c in &NO_STD_CRATES[1..] {
        docs.extend(["-p", c]);
    }
    step(
        "docs (aarch64-unknown-none)",
        cargo_env(&docs, &[("RUSTDOCFLAGS", "-D warnings")]),
    )?;
    step(
        "clippy (example hypervisor and Linux timer check, aarch64-unknown-none)",
        cargo(&[
            "clippy",
            "-p",
            EXAMPLE,
            "-p",
            linux::CHECK_PACKAGE,
            "--bins",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "clippy (example hypervisor with the eager baseline, aarch64-unknown-none)",
        cargo(&[
            "clippy",
            "-p",
            EXAMPLE,
            "--features",
            "eager",
            "--bins",
            "--target",
            TARGET,
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "perf scenario: the quiet exit makes no timer register access",
        bench::quick(&options),
    )?;
    qemu_matrices(&options)?;
    println!("\nxtask test: all checks passed");
    Ok(())
}

fn qemu_matrix(args: &[String], caller_dir: &Path) -> Result {
    let (options, rest) = qemu::Options::take(args, caller_dir, &BOTH_QEMUS)?;
    no_more_args(&rest)?;
    ensure_target()?;
    qemu_matrices(&options)
}

fn no_more_args(rest: &[String]) -> Result {
    match rest.first() {
        Some(arg) => Err(format!("unknown option `{arg}`\n\n{HELP}")),
        None => Ok(()),
    }
}

/// The QEMU matrix on every QEMU of `options`, each followed by the Linux
/// guest's configurations ([`linux::CONFIGS`]): all QEMUs and the Linux
/// guest are provided first, then the runs go one after the other (under
/// load if asked).
/// A QEMU that cannot be provided fails the command after the others ran.
fn qemu_matrices(options: &qemu::Options) -> Result {
    let image = step("build the example hypervisor", qemu::build())?;
    let mut problems = Vec::new();
    // The Linux guest (kernel, busybox, the timer check program, the
    // initramfs) runs after each QEMU's matrix; without it those runs are
    // reported as not run and the command fails.
    let guest = match step("provide the Linux guest", linux::prepare(None)) {
        Ok(guest) => Some(guest),
        Err(e) => {
            problems.push(e);
            None
        }
    };
    let mut qemus = Vec::new();
    for choice in &options.qemus {
        match step(&format!("provide {}", choice.name()), qemu::resolve(choice)) {
            Ok(q) => qemus.push(q),
            Err(e) => problems.push(e),
        }
    }
    let mut reports = Vec::new();
    {
        // Stopped and joined at the end of this block, also on an error.
        let load = options.under_load.then(load::Load::start);
        let how = load.as_ref().map_or(String::new(), |l| {
            format!(" under load ({} busy loops)", l.loops())
        });
        for q in &qemus {
            let name = format!("QEMU matrix on {}{how}", q.label());
            match qemu::matrix(q, &image) {
                Ok(report) => {
                    let verdict = match report.failed.len() {
                        0 => Ok(()),
                        n => Err(format!("{n} runs failed")),
                    };
                    let _ = step(&name, verdict);
                    reports.push(report);
                }
                Err(e) => {
                    if let Err(e) = step(&name, Err::<(), String>(e)) {
                        problems.push(e);
                    }
                }
            }
            let Some(guest) = &guest else { continue };
            let name = format!("Linux guest on {}{how}", q.label());
            match linux::matrix(q, &image, guest) {
                Ok(report) => {
                    let verdict = match report.failed.len() {
                        0 => Ok(()),
                        n => Err(format!("{n} runs failed")),
                    };
                    let _ = step(&name, verdict);
                    reports.push(report);
                }
                Err(e) => {
                    if let Err(e) = step(&name, Err::<(), String>(e)) {
                        problems.push(e);
                    }
                }
            }
        }
    }
    println!(
        "\n==> QEMU matrices{}:",
        if options.under_load {
            " under load"
        } else {
            ""
        }
    );
    for report in &reports {
        println!("    {}", report.summary());
    }
    for problem in &problems {
        println!("    not run: {problem}");
    }
    let failed: Vec<String> = reports
        .iter()
        .flat_map(|r| r.failed.iter().map(move |f| format!("{} {f}", r.qemu)))
        .collect();
    if !failed.is_empty() {
        problems.push(format!("QEMU runs failed: {}", failed.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn demo(args: &[String], caller_dir: &Path) -> Result {
    if args.iter().any(|a| a == "--host") {
        return cargo(&[
            "run",
            "--quiet",
            "-p",
            "arch-timer-virt-sim",
            "--example",
            "demo",
        ]);
    }
    if args.iter().any(|a| a == "--linux") {
        let rest: Vec<String> = args.iter().filter(|a| *a != "--linux").cloned().collect();
        return linux::linux(&rest, caller_dir);
    }
    let (options, rest) = qemu::Options::take(args, caller_dir, &[qemu::Choice::Distro])?;
    no_more_args(&rest)?;
    let q = qemu::resolve(options.single()?)?;
    ensure_target()?;
    let image = qemu::build()?;
    let run = qemu::parse_run(&[], Path::new("."))?;
    println!(
        "==> booting the example hypervisor on {}: periodic virtual timer, GICv3, non-VHE host",
        q.label()
    );
    let load = options.under_load.then(load::Load::start);
    let outcome = qemu::boot(&q, &image, &run, true);
    drop(load);
    let outcome = outcome?;
    if outcome.passed {
        Ok(())
    } else {
        Err("the QEMU run failed".into())
    }
}

fn qemu_run(args: &[String], caller_dir: &Path) -> Result {
    let (options, rest) = qemu::Options::take(args, caller_dir, &[qemu::Choice::Distro])?;
    let run = qemu::parse_run(&rest, caller_dir)?;
    let q = qemu::resolve(options.single()?)?;
    ensure_target()?;
    let image = qemu::build()?;
    println!("==> {}", q.label());
    let load = options.under_load.then(load::Load::start);
    let outcome = qemu::boot(&q, &image, &run, true);
    drop(load);
    let outcome = outcome?;
    if outcome.passed {
        Ok(())
    } else {
        Err("the QEMU run failed".into())
    }
}

/// `cargo xtask bench --model`: the host model's report.
fn bench_model() -> Result {
    cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "arch-timer-virt-sim",
        "--example",
        "report",
        "--",
        "--code-size",
    ])
}

/// The root README shows the run loop that the core crate's README (its
/// crate documentation) compiles as a doctest; they must not drift apart.
fn readme_in_sync() -> Result {
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    let rust_block = |text: &str| -> Option<String> {
        let start = text.find("```rust\n")?;
        let end = text.get(start..)?.find("\n```\n")?;
        text.get(start..start + end).map(str::to_owned)
    };
    let root = rust_block(&read("README.md")?).ok_or("README.md has no rust block")?;
    let core = rust_block(&read("arch-timer-virt/README.md")?)
        .ok_or("arch-timer-virt/README.md has no rust block")?;
    if root == core {
        Ok(())
    } else {
        Err("the run loop in README.md differs from arch-timer-virt/README.md: copy it over".into())
    }
}

/// The phases a command went through: name, wall time, passed.
static PHASES: Mutex<Vec<(String, Duration, bool)>> = Mutex::new(Vec::new());
/// When the last phase ended (or the first began).
static LAST_PHASE: Mutex<Option<Instant>> = Mutex::new(None);

/// Ends a phase: prints its name, verdict and wall time (since the previous
/// phase ended) and records it for the summary that [`print_phases`]
/// prints.
fn step<T>(name: &str, result: Result<T>) -> Result<T> {
    let now = Instant::now();
    let elapsed = LAST_PHASE
        .lock()
        .map(|mut last| {
            let since = last.map_or(Duration::ZERO, |t| now.duration_since(t));
            *last = Some(now);
            since
        })
        .unwrap_or_default();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    println!("\n==> {name}: {verdict} ({:.1} s)", elapsed.as_secs_f64());
    if let Ok(mut phases) = PHASES.lock() {
        phases.push((name.to_owned(), elapsed, result.is_ok()));
    }
    result.map_err(|e| format!("{name}: {e}"))
}

/// Starts timing phases (the first phase is timed from here).
fn start_phases() {
    if let Ok(mut last) = LAST_PHASE.lock() {
        *last = Some(Instant::now());
    }
}

/// Prints every phase with its wall time, if there were phases.
fn print_phases() {
    let Ok(phases) = PHASES.lock() else { return };
    if phases.is_empty() {
        return;
    }
    let total: Duration = phases.iter().map(|p| p.1).sum();
    println!("\n==> wall time per phase:");
    for (name, elapsed, ok) in phases.iter() {
        let verdict = if *ok { "" } else { "  FAILED" };
        println!("    {:>7.1} s  {name}{verdict}", elapsed.as_secs_f64());
    }
    println!("    {:>7.1} s  total", total.as_secs_f64());
}

pub(crate) fn cargo(args: &[&str]) -> Result {
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], envs: &[(&str, &str)]) -> Result {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("$ cargo {}", args.join(" "));
    run(Command::new(cargo).args(args).envs(envs.iter().copied()))
}

pub(crate) fn run(command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed ({status})", command.get_program()))
    }
}

/// Installs the bare-metal target with rustup if it is missing, or says
/// exactly what to do without rustup.
fn ensure_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
            {
                return Ok(());
            }
            println!("==> installing the {TARGET} target");
            run(Command::new("rustup").args(["target", "add", TARGET]))
        }
        _ => Err(format!(
            "rustup not found: install the `{TARGET}` standard library for your toolchain \
             (with rustup: `rustup target add {TARGET}`)"
        )),
    }
}
