//! Project automation for arch-timer-virt: `cargo xtask test`, `cargo xtask
//! demo`, `cargo xtask bench`. Run `cargo xtask help` for the list.

use std::env;
use std::path::Path;
use std::process::{Command, ExitCode};

mod linux;
mod msrv;
mod qemu;

/// The bare-metal target every `no_std` crate is built and linted for.
const TARGET: &str = "aarch64-unknown-none";
/// The crates that must build with no std for [`TARGET`].
const NO_STD_CRATES: [&str; 4] = [
    "arch-timer-virt",
    "arch-timer-virt-aarch64",
    "arch-timer-virt-gicv3",
    "arch-timer-virt-gicv2",
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
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("demo") => demo(&args[1..]),
        Some("qemu") => qemu_run(&args[1..], &caller_dir),
        Some("bench") => bench(),
        Some("linux") => linux::linux(&args[1..], &caller_dir),
        Some("msrv") => msrv::check(),
        Some("help" | "--help" | "-h") | None => {
            print!("{}", HELP);
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
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

  test    everything CI checks: formatting, MSRV, clippy (host and
          aarch64-unknown-none), host tests, no_std builds, docs
  demo    boot the example hypervisor under QEMU and show a guest's
          forwarded timer interrupts (installs QEMU when missing, as root);
          `demo --host`: one vCPU through its whole timer lifecycle on the
          host model, each step with the hardware accesses it made
  qemu    one QEMU run of the example hypervisor:
          [--scenario NAME|N] [--gic 2|3] [--mode vhe|nvhe] [--smp N]
          [--guest FILE]  (an external guest image: ELF, or raw loaded
          at 0x4800_0000; see the example's README for the guest ABI)
  linux   boot Debian's unmodified arm64 kernel under the example hypervisor
          and report how far it got: [--gic 2|3] [--mode vhe|nvhe]
          [--root DIR] [--timeout SECONDS] [--provision-only]
          (provisions the kernel and busybox-static with apt, as root)
  msrv    check the stated rust-version against edition 2024 and
          every library dependency's own rust-version
  bench   the hardware-access and timing report: lazy library vs eager
          save/restore on the host model, memory per vCPU and VM, and the
          core's code size for aarch64-unknown-none (needs llvm-size)
";

fn test() -> Result {
    ensure_target()?;
    step("format", cargo(&["fmt", "--all", "--", "--check"]))?;
    step("msrv", msrv::check())?;
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
    step(
        "tests (host)",
        cargo(&[&["test"][..], &host, &["--all-features"]].concat()),
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
        "clippy (example hypervisor, aarch64-unknown-none)",
        cargo(&[
            "clippy", "-p", EXAMPLE, "--bins", "--target", TARGET, "--", "-D", "warnings",
        ]),
    )?;
    step("QEMU", qemu::ensure_qemu())?;
    let image = qemu::build()?;
    step("QEMU matrix", qemu::matrix(&image))?;
    println!("\nxtask test: all checks passed");
    Ok(())
}

fn demo(args: &[String]) -> Result {
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
    ensure_target()?;
    qemu::ensure_qemu()?;
    let image = qemu::build()?;
    let run = qemu::parse_run(&[], Path::new("."))?;
    println!("==> booting the example hypervisor: periodic virtual timer, GICv3, non-VHE host");
    let outcome = qemu::boot(&image, &run, true)?;
    if outcome.passed {
        Ok(())
    } else {
        Err("the QEMU run failed".into())
    }
}

fn qemu_run(args: &[String], caller_dir: &Path) -> Result {
    let run = qemu::parse_run(args, caller_dir)?;
    ensure_target()?;
    qemu::ensure_qemu()?;
    let image = qemu::build()?;
    let outcome = qemu::boot(&image, &run, true)?;
    if outcome.passed {
        Ok(())
    } else {
        Err("the QEMU run failed".into())
    }
}

fn bench() -> Result {
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

fn step(name: &str, result: Result) -> Result {
    println!("\n==> {name}");
    result.map_err(|e| format!("{name}: {e}"))
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
