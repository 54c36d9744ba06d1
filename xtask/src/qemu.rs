//! The QEMUs to run (the distribution's, QEMU 10 from Debian 12's
//! backports, or any other) and the options that pick them; building the
//! example hypervisor. Running it under QEMU, one run or the whole matrix,
//! is `arch_timer_virt_tests::qemu`, which the `qemu_matrix` test of
//! `arch-timer-virt-tests` uses too.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) use arch_timer_virt_tests::qemu::{
    EXTERNAL_SCENARIO, MatrixReport, Qemu, Run, SCENARIOS, boot, describe_cntfrq, machine_option,
    matrix, result_cntfrq, tail, target_dir,
};

use crate::{Result, TARGET, backports, cargo};

/// Which QEMU to run: `--qemu 7|10|PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The distribution's `qemu-system-aarch64` (7.2 on Debian 12), on `PATH`.
    Distro,
    /// QEMU 10 from Debian 12's backports, unpacked under `target/qemu-10/`.
    Backports,
    /// Any other `qemu-system-aarch64`, run as it is.
    Path(PathBuf),
}

impl Choice {
    /// Parses the value of `--qemu`: `7` (or `7.2`), `10`, or a path, taken
    /// from `caller_dir` when relative.
    pub(crate) fn parse(value: &str, caller_dir: &Path) -> Result<Choice> {
        match value {
            "7" | "7.2" => Ok(Choice::Distro),
            "10" => Ok(Choice::Backports),
            "" => Err("--qemu takes 7, 10 or the path of a qemu-system-aarch64".into()),
            path => Ok(Choice::Path(caller_dir.join(path))),
        }
    }

    /// What the choice is called before it is resolved.
    pub(crate) fn name(&self) -> String {
        match self {
            Choice::Distro => "QEMU 7 (the distribution's)".into(),
            Choice::Backports => "QEMU 10 (bookworm-backports)".into(),
            Choice::Path(path) => format!("QEMU at {}", path.display()),
        }
    }
}

/// The QEMU options every QEMU command takes: `--qemu 7|10|PATH` (may be
/// given more than once) and `--under-load`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// The QEMUs to run, in order.
    pub(crate) qemus: Vec<Choice>,
    /// Keep every core busy while QEMU runs (see [`crate::load`]).
    pub(crate) under_load: bool,
}

impl Options {
    /// Takes `--qemu` and `--under-load` out of `args`; returns them (with
    /// `default` QEMUs when no `--qemu` is given) and the other arguments.
    pub(crate) fn take(
        args: &[String],
        caller_dir: &Path,
        default: &[Choice],
    ) -> Result<(Options, Vec<String>)> {
        let mut qemus = Vec::new();
        let mut under_load = false;
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--qemu" => {
                    let value = it.next().ok_or("--qemu needs a value: 7, 10 or a path")?;
                    let choice = Choice::parse(value, caller_dir)?;
                    if !qemus.contains(&choice) {
                        qemus.push(choice);
                    }
                }
                "--under-load" => under_load = true,
                _ => rest.push(arg.clone()),
            }
        }
        if qemus.is_empty() {
            qemus = default.to_vec();
        }
        Ok((Options { qemus, under_load }, rest))
    }

    /// The one QEMU of a command that runs one.
    pub(crate) fn single(&self) -> Result<&Choice> {
        match self.qemus.as_slice() {
            [one] => Ok(one),
            _ => Err("this command runs one QEMU: give --qemu once".into()),
        }
    }
}

/// Finds (installing or unpacking it when it can) the QEMU of `choice`.
pub(crate) fn resolve(choice: &Choice) -> Result<Qemu> {
    let qemu = match choice {
        Choice::Distro => {
            ensure_qemu()?;
            Qemu::plain(PathBuf::from("qemu-system-aarch64"))
        }
        Choice::Backports => {
            let unpacked = backports::ensure()?;
            Qemu::unpacked(unpacked.binary, unpacked.data_dir, unpacked.module_dir)
        }
        Choice::Path(path) => Qemu::plain(path.clone()),
    }
    .probe()?;
    if *choice == Choice::Distro && !qemu.version.starts_with("7.") {
        println!(
            "note: the distribution's QEMU is {} here, not 7.2 (Debian 12's): \
             the `7` runs test that one",
            qemu.version
        );
    }
    Ok(qemu)
}

/// Whether this process runs as root.
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Parses `--scenario NAME|N --gic 2|3 --mode vhe|nvhe --smp N --guest FILE`;
/// a relative `FILE` is taken from `caller_dir`.
pub(crate) fn parse_run(args: &[String], caller_dir: &Path) -> Result<Run> {
    let mut run = Run {
        scenario: 1,
        gic: 3,
        vhe: false,
        smp: 0,
        guest: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => {
                let v = value()?;
                run.scenario = SCENARIOS
                    .iter()
                    .find(|s| s.0 == v || s.1.to_string() == *v)
                    .map(|s| s.1)
                    .ok_or(format!("unknown scenario `{v}`"))?;
            }
            "--gic" => {
                run.gic = match value()?.as_str() {
                    "2" | "v2" => 2,
                    "3" | "v3" => 3,
                    other => return Err(format!("--gic takes 2 or 3, not `{other}`")),
                }
            }
            "--mode" => {
                run.vhe = match value()?.as_str() {
                    "vhe" => true,
                    "nvhe" => false,
                    other => return Err(format!("--mode takes vhe or nvhe, not `{other}`")),
                }
            }
            "--smp" => {
                run.smp = value()?.parse().map_err(|e| format!("--smp: {e}"))?;
            }
            "--guest" => {
                run.guest = Some(caller_dir.join(value()?));
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if run.guest.is_some() {
        if args.iter().any(|a| a == "--scenario") && run.scenario != EXTERNAL_SCENARIO {
            return Err("--guest runs the `external` scenario; drop --scenario".into());
        }
        run.scenario = EXTERNAL_SCENARIO;
    }
    if run.smp == 0 {
        run.smp = SCENARIOS
            .iter()
            .find(|s| s.1 == run.scenario)
            .map_or(1, |s| s.2);
    }
    Ok(run)
}

/// Makes sure the distribution's `qemu-system-aarch64` is there: installs
/// `qemu-system-arm` with apt when running as root, or says what to install.
fn ensure_qemu() -> Result {
    if Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
    {
        return Ok(());
    }
    if !is_root() {
        return Err("qemu-system-aarch64 is missing: install it \
             (Debian/Ubuntu: `sudo apt-get install -y qemu-system-arm`)"
            .into());
    }
    println!("==> installing QEMU (apt-get install -y qemu-system-arm)");
    crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
    crate::run(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "qemu-system-arm"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .map_err(|e| {
        format!(
            "{e}\nIf apt says a newer qemu-utils (from backports) breaks qemu-system-common, \
             install the release's own: `apt-get install --allow-downgrades qemu-system-arm \
             qemu-utils/$(. /etc/os-release; echo $VERSION_CODENAME)` (`.ci/run` does)"
        )
    })
}

/// Builds the hypervisor image and returns its path.
pub(crate) fn build() -> Result<PathBuf> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "qemu-hypervisor",
        "--bins",
        "--target",
        TARGET,
    ])?;
    Ok(arch_timer_virt_tests::qemu::image_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_options_are_taken_out_of_the_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let here = Path::new("/caller");
        let default = [Choice::Distro, Choice::Backports];
        let take = |a: &[&str]| Options::take(&args(a), here, &default);

        let (o, rest) = take(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.qemus, default);
        assert!(!o.under_load && rest.is_empty());
        assert!(o.single().is_err());

        let (o, rest) = take(&["--scenario", "ptimer", "--qemu", "10", "--under-load"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.qemus, [Choice::Backports]);
        assert!(o.under_load);
        assert_eq!(rest, args(&["--scenario", "ptimer"]));
        assert_eq!(o.single(), Ok(&Choice::Backports));

        let (o, _) = take(&["--qemu", "7.2", "--qemu", "bin/qemu", "--qemu", "7"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            o.qemus,
            [
                Choice::Distro,
                Choice::Path(PathBuf::from("/caller/bin/qemu"))
            ]
        );
        let (o, _) = take(&["--qemu", "/opt/q"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.qemus, [Choice::Path(PathBuf::from("/opt/q"))]);

        assert!(take(&["--qemu"]).is_err());
        assert!(take(&["--qemu", ""]).is_err());
    }

    #[test]
    fn options_parse_and_the_guest_selects_the_external_scenario() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let here = Path::new("/caller");
        let r = parse_run(
            &args(&["--scenario", "migration", "--gic", "2", "--mode", "vhe"]),
            here,
        );
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.scenario, r.gic, r.vhe, r.smp), (7, 2, true, 2));
        let r = parse_run(&args(&["--guest", "g.elf"]), here).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.scenario, EXTERNAL_SCENARIO);
        assert_eq!(r.guest.as_deref(), Some(Path::new("/caller/g.elf")));
        let r =
            parse_run(&args(&["--guest", "/abs/g.bin"]), here).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.guest.as_deref(), Some(Path::new("/abs/g.bin")));
        assert!(parse_run(&args(&["--guest", "g.elf", "--scenario", "periodic"]), here).is_err());
        assert!(parse_run(&args(&["--scenario", "external", "--guest", "g.elf"]), here).is_ok());
        assert!(parse_run(&args(&["--gic", "4"]), here).is_err());
        assert!(parse_run(&args(&["--scenario", "nope"]), here).is_err());
    }
}
