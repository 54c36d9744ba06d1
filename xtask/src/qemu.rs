//! Building the example hypervisor and running it under QEMU: one run, the
//! test matrix, QEMU itself.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, TARGET, cargo};

/// Where the hypervisor reads its configuration word (see
/// `examples/qemu-hypervisor/src/config.rs`).
const CONFIG_ADDR: &str = "0x47000000";
/// The configuration word's magic top byte.
const CONFIG_MAGIC: u32 = 0xA7;
/// How long one QEMU run may take before it counts as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The scenarios, by configuration number, with the CPUs each needs.
pub(crate) const SCENARIOS: [(&str, u8, u8); 9] = [
    ("hello", 0, 1),
    ("periodic", 1, 1),
    ("programming", 2, 1),
    ("masking", 3, 1),
    ("wfi-sleep", 4, 1),
    ("ptimer", 5, 1),
    ("two-vcpus", 6, 1),
    ("migration", 7, 2),
    ("external", EXTERNAL_SCENARIO, 1),
];

/// One QEMU run of the example hypervisor.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub(crate) scenario: u8,
    pub(crate) gic: u8,
    pub(crate) vhe: bool,
    pub(crate) smp: u8,
    pub(crate) guest: Option<PathBuf>,
}

impl Run {
    fn word(&self) -> u32 {
        u32::from_le_bytes([self.scenario, u8::from(self.vhe), self.gic, 0]) | (CONFIG_MAGIC << 24)
    }

    fn describe(&self) -> String {
        let name = SCENARIOS
            .iter()
            .find(|s| s.1 == self.scenario)
            .map_or("?", |s| s.0);
        format!(
            "{name} gic=v{} mode={} smp={}",
            self.gic,
            if self.vhe { "vhe" } else { "nvhe" },
            self.smp
        )
    }
}

/// What a finished run printed and how it ended.
pub(crate) struct Outcome {
    pub(crate) passed: bool,
    pub(crate) output: String,
}

impl Outcome {
    /// The hypervisor's `RESULT` line, if it printed one.
    pub(crate) fn result_line(&self) -> Option<&str> {
        self.output.lines().find(|l| l.starts_with("RESULT"))
    }
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

/// Makes sure `qemu-system-aarch64` is there: installs Debian's
/// `qemu-system-arm` when running as root, or says what to install.
pub(crate) fn ensure_qemu() -> Result {
    if let Ok(out) = Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        && out.status.success()
    {
        let version = String::from_utf8_lossy(&out.stdout);
        let first = version.lines().next().unwrap_or_default();
        if !first.contains("version 7.2") {
            println!(
                "note: the example was checked against QEMU 7.2; this is `{first}` \
                 (a later `-cpu max` adds features such as FEAT_ECV)"
            );
        }
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
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
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    Ok(target_dir
        .join(TARGET)
        .join("release")
        .join("qemu-hypervisor"))
}

/// Boots `image` under QEMU for `run`, with a timeout.
pub(crate) fn boot(image: &Path, run: &Run, echo: bool) -> Result<Outcome> {
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args([
        "-machine",
        &format!("virt,virtualization=on,gic-version={}", run.gic),
        "-cpu",
        "max",
        "-smp",
        &run.smp.to_string(),
        "-m",
        // An external guest lives at 0x4800_0000, past the first 128 MiB.
        if run.scenario == EXTERNAL_SCENARIO {
            "256M"
        } else {
            "128M"
        },
        "-nographic",
        "-semihosting",
        "-device",
        &format!(
            "loader,addr={CONFIG_ADDR},data={:#x},data-len=4",
            run.word()
        ),
    ]);
    if run.scenario == EXTERNAL_SCENARIO {
        let guest = match &run.guest {
            Some(guest) => guest.clone(),
            None => sample_guest(image),
        };
        cmd.args(["-device", &guest_loader(&guest)?]);
    }
    cmd.arg("-kernel").arg(image);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
    // Both pipes are drained while QEMU runs, so a chatty QEMU cannot
    // block on a full pipe and be mistaken for a hung run.
    let stdout = drain(child.stdout.take().ok_or("no QEMU stdout")?);
    let stderr = drain(child.stderr.take().ok_or("no QEMU stderr")?);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = stdout.join().unwrap_or_default();
    output.push_str(&stderr.join().unwrap_or_default());
    if echo {
        print!("{output}");
    }
    let Some(status) = status else {
        return Ok(Outcome {
            passed: false,
            output: format!("{output}\n(timed out after {} s)", RUN_TIMEOUT.as_secs()),
        });
    };
    // A run passes only with both verdicts: QEMU's exit status (the
    // hypervisor's semihosting exit) and a RESULT line that says PASS for
    // this very run. A guest that powers the machine off, or exits QEMU
    // some other way, leaves no such line.
    let verdict = passing_result(&output, run);
    let passed = status.success() && verdict.is_ok();
    if let Err(why) = verdict
        && status.success()
    {
        output.push_str(&format!("\n(exit status 0, but {why})"));
    }
    Ok(Outcome { passed, output })
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Checks that `output` holds a `RESULT` line ending in `PASS` whose
/// scenario, GIC and host mode are those of `run`.
fn passing_result(output: &str, run: &Run) -> std::result::Result<(), String> {
    let line = output
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .ok_or("no RESULT line")?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    };
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.1 == run.scenario)
        .map_or("?", |s| s.0);
    let gic = format!("v{}", run.gic);
    let mode = if run.vhe { "vhe" } else { "nvhe" };
    let expected = [
        ("scenario", scenario),
        ("gic", gic.as_str()),
        ("mode", mode),
    ];
    for (key, want) in expected {
        if field(key) != Some(want) {
            return Err(format!(
                "the RESULT line is not for this run ({key} should be {want})"
            ));
        }
    }
    if line.split_whitespace().last() == Some("PASS") {
        Ok(())
    } else {
        Err("the RESULT line does not say PASS".into())
    }
}

/// Where an external guest image is loaded (see the README's guest ABI).
pub(crate) const GUEST_LOAD_ADDR: &str = "0x48000000";
/// The configuration number of the scenario that runs an external guest.
pub(crate) const EXTERNAL_SCENARIO: u8 = 8;

/// The example's own external guest, `guest-hello`, built beside the
/// hypervisor image.
fn sample_guest(image: &Path) -> PathBuf {
    image.with_file_name("guest-hello")
}

/// QEMU's loader argument for a guest image: an ELF file is loaded at its
/// segments' addresses, anything else raw at [`GUEST_LOAD_ADDR`].
fn guest_loader(guest: &Path) -> Result<String> {
    let mut magic = [0_u8; 4];
    std::fs::File::open(guest)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("guest image {}: {e}", guest.display()))?;
    Ok(if magic == *b"\x7fELF" {
        format!("loader,file={}", guest.display())
    } else {
        format!(
            "loader,file={},addr={GUEST_LOAD_ADDR},force-raw=on",
            guest.display()
        )
    })
}

/// Every scenario on GICv3 and GICv2, non-VHE and VHE hosts. Prints one
/// line per run and fails if any run does.
pub(crate) fn matrix(image: &Path) -> Result {
    let mut failed = Vec::new();
    let mut runs = 0_u32;
    for gic in [3, 2] {
        for vhe in [false, true] {
            for &(_, scenario, smp) in &SCENARIOS {
                let run = Run {
                    scenario,
                    gic,
                    vhe,
                    smp,
                    guest: None,
                };
                runs += 1;
                let outcome = boot(image, &run, false)?;
                let line = outcome.result_line().unwrap_or("(no RESULT line)");
                let verdict = if outcome.passed { "ok" } else { "FAILED" };
                println!("{verdict:6} {:32} {line}", run.describe());
                if !outcome.passed {
                    println!("{}", tail(&outcome.output, 15));
                    failed.push(run.describe());
                }
            }
        }
    }
    println!(
        "qemu: {} passed, {} failed",
        runs as usize - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("QEMU runs failed: {}", failed.join(", ")))
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(scenario: u8, gic: u8, vhe: bool) -> Run {
        Run {
            scenario,
            gic,
            vhe,
            smp: 1,
            guest: None,
        }
    }

    const LINE: &str = "hv: boot\nRESULT scenario=periodic gic=v3 mode=nvhe vcpus=1 lost=0 PASS\n";

    #[test]
    fn a_pass_needs_a_result_line_for_this_run() {
        assert_eq!(passing_result(LINE, &run(1, 3, false)), Ok(()));
        assert!(passing_result("hv: boot\n", &run(1, 3, false)).is_err());
        assert!(passing_result(LINE, &run(1, 2, false)).is_err());
        assert!(passing_result(LINE, &run(1, 3, true)).is_err());
        assert!(passing_result(LINE, &run(2, 3, false)).is_err());
        let failed = LINE.replace(" PASS", " FAIL");
        assert!(passing_result(&failed, &run(1, 3, false)).is_err());
    }

    #[test]
    fn the_configuration_word_matches_the_hypervisor_format() {
        // 0xA7GGMMSS: magic, GIC, host mode, scenario.
        assert_eq!(run(7, 2, true).word(), 0xA702_0107);
        assert_eq!(run(1, 3, false).word(), 0xA703_0001);
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
