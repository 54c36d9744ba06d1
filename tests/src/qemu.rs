//! Building the example hypervisor and running it under QEMU: one run and
//! the 40-run matrix (every scenario on GICv3 and GICv2, non-VHE and VHE
//! hosts), with the verdict of each run. Shared by this crate's
//! `qemu_matrix` test and `cargo xtask`, which provisions the QEMUs (the
//! distribution's 7.2, QEMU 10 from Debian 12's backports) and adds the
//! Linux guest's runs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What can go wrong before a run has a verdict, as a message.
pub type Result<T = ()> = std::result::Result<T, String>;

/// The bare-metal target the example hypervisor is built for.
pub const TARGET: &str = "aarch64-unknown-none";

/// The example hypervisor's package.
pub const EXAMPLE: &str = "qemu-hypervisor";

/// Prints a line to the real standard output, past the test harness's
/// capture: a matrix takes minutes, and its progress must show.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Where the hypervisor reads its configuration word (see
/// `examples/qemu-hypervisor/src/config.rs`).
const CONFIG_ADDR: &str = "0x47000000";
/// The configuration word's magic top byte.
const CONFIG_MAGIC: u32 = 0xA7;
/// How long one QEMU run may take before it counts as hung (the default
/// of [`BootOptions::timeout`]).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The scenarios, by configuration number, with the CPUs each needs.
pub const SCENARIOS: [(&str, u8, u8); 10] = [
    ("hello", 0, 1),
    ("periodic", 1, 1),
    ("programming", 2, 1),
    ("masking", 3, 1),
    ("wfi-sleep", 4, 1),
    ("ptimer", 5, 1),
    ("ptimer-offset", PTIMER_OFFSET_SCENARIO, 1),
    ("two-vcpus", 6, 1),
    ("migration", 7, 2),
    ("external", EXTERNAL_SCENARIO, 1),
];

/// The scenarios `cargo xtask bench` boots (not in the matrix: they need
/// `-icount shift=0`), by configuration number, with the CPUs each needs.
pub const BENCH_SCENARIOS: [(&str, u8, u8); 2] = [("perf", 10, 1), ("perf-ptimer", 12, 1)];

/// The name of scenario number `n` ([`SCENARIOS`] or [`BENCH_SCENARIOS`]),
/// `?` for a number neither has.
#[must_use]
pub fn scenario_name(n: u8) -> &'static str {
    SCENARIOS
        .iter()
        .chain(&BENCH_SCENARIOS)
        .find(|s| s.1 == n)
        .map_or("?", |s| s.0)
}

/// A QEMU ready to run: its binary, and for an unpacked QEMU the directories
/// it must be pointed at.
#[derive(Clone, Debug)]
pub struct Qemu {
    program: PathBuf,
    /// `-L`: firmware and keymaps.
    data_dir: Option<PathBuf>,
    /// `QEMU_MODULE_DIR`: the modules QEMU opens at start-up.
    module_dir: Option<PathBuf>,
    /// Options this QEMU needs on every run.
    extra_args: Vec<&'static str>,
    /// What `--version` says, e.g. `7.2.22`.
    pub version: String,
}

impl Qemu {
    /// A QEMU installed in the usual way, found as `program` (a path, or a
    /// name on `PATH`); its version is read with [`probe`](Self::probe).
    #[must_use]
    pub fn plain(program: PathBuf) -> Qemu {
        Qemu {
            program,
            data_dir: None,
            module_dir: None,
            extra_args: Vec::new(),
            version: String::new(),
        }
    }

    /// A QEMU unpacked, not installed: its binary, `-L` data directory and
    /// `QEMU_MODULE_DIR`. No audio device: the libraries of its audio
    /// modules (PipeWire) may be missing, and it would say so on every run
    /// while probing them.
    #[must_use]
    pub fn unpacked(program: PathBuf, data_dir: PathBuf, module_dir: PathBuf) -> Qemu {
        Qemu {
            program,
            data_dir: Some(data_dir),
            module_dir: Some(module_dir),
            extra_args: vec!["-audio", "none"],
            version: String::new(),
        }
    }

    /// The QEMU unpacked under `root` (`usr/bin/qemu-system-aarch64`,
    /// `usr/share/qemu`, `usr/lib/<multiarch>/qemu`), as `cargo xtask`
    /// leaves QEMU 10 in `<target>/qemu-10/root`.
    ///
    /// # Errors
    ///
    /// A file or directory is missing.
    pub fn unpacked_in(root: &Path) -> Result<Qemu> {
        let binary = root.join("usr/bin/qemu-system-aarch64");
        let data_dir = root.join("usr/share/qemu");
        let module_dir = std::fs::read_dir(root.join("usr/lib"))
            .map_err(|e| format!("{}/usr/lib: {e}", root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path().join("qemu")))
            .find(|p| p.is_dir())
            .ok_or_else(|| format!("no usr/lib/<arch>/qemu in {}", root.display()))?;
        for path in [&binary, &data_dir] {
            if !path.exists() {
                return Err(format!("{} is missing", path.display()));
            }
        }
        Ok(Qemu::unpacked(binary, data_dir, module_dir))
    }

    /// Runs `--version` and records the version.
    ///
    /// # Errors
    ///
    /// QEMU does not start, fails, or prints no version.
    pub fn probe(mut self) -> Result<Qemu> {
        let out = self
            .command()
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} --version` failed: {}",
                self.program.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        parse_version(&text)
            .ok_or(format!(
                "{} --version printed no QEMU version",
                self.program.display()
            ))?
            .clone_into(&mut self.version);
        Ok(self)
    }

    /// `QEMU <version>`.
    pub fn label(&self) -> String {
        format!("QEMU {}", self.version)
    }

    /// The command to boot a machine: the data and module directories set
    /// and the options this QEMU needs on every run given.
    pub fn machine_command(&self) -> Command {
        let mut cmd = self.command();
        cmd.args(&self.extra_args);
        cmd
    }

    /// The program, for messages.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The command with the data and module directories set.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if let Some(dir) = &self.data_dir {
            cmd.arg("-L").arg(dir);
        }
        if let Some(dir) = &self.module_dir {
            cmd.env("QEMU_MODULE_DIR", dir);
        }
        cmd
    }
}

/// The version in `qemu-system-aarch64 --version` output
/// (`QEMU emulator version 7.2.22 (Debian ...)`).
fn parse_version(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.split_once("QEMU emulator version "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
}

/// The counter frequency a `RESULT` line reports (`cntfrq_hz=<N>`), if it
/// reports one.
pub fn result_cntfrq(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("cntfrq_hz="))
        .and_then(|v| v.parse().ok())
}

/// Hertz in a megahertz, for printing.
const HZ_PER_MHZ: u64 = 1_000_000;

/// A frequency in MHz for people: `62.5 MHz`, `1000 MHz`, `24 MHz`.
pub fn mhz(hz: u64) -> String {
    let whole = hz / HZ_PER_MHZ;
    let frac = hz % HZ_PER_MHZ;
    if frac == 0 {
        format!("{whole} MHz")
    } else {
        let digits = format!("{frac:06}");
        format!("{whole}.{} MHz", digits.trim_end_matches('0'))
    }
}

/// The frequency part of a result, or why there is none.
pub fn describe_cntfrq(hz: Option<u64>) -> String {
    hz.map_or_else(
        || "CNTFRQ not reported".to_owned(),
        |hz| format!("CNTFRQ {}", mhz(hz)),
    )
}

/// The configuration number of `ptimer-offset`, the scenario that boots
/// with EL3 (see [`Run::needs_el3`]).
pub const PTIMER_OFFSET_SCENARIO: u8 = 11;

/// The `-machine` option of every boot of the example hypervisor: QEMU's
/// current `virt` with EL2 (`virtualization=on`), the GIC `gic` (2 or 3),
/// and with `el3` also EL3 (`secure=on`).
///
/// With EL3, QEMU starts the image at EL3 and the example's EL3 stage
/// enables what a machine without EL3 lacks: FEAT_ECV's physical offset
/// (`SCR_EL3.ECVEn`). Only on one CPU: QEMU starts every CPU of such a
/// machine at the image's entry, which the example's 2-CPU scenarios do
/// not expect, and on GICv2 another CPU's banked interrupt groups cannot
/// be made non-secure from the boot CPU.
#[must_use]
pub fn machine_option(gic: u8, el3: bool) -> String {
    format!(
        "virt,virtualization=on{},gic-version={gic}",
        if el3 { ",secure=on" } else { "" }
    )
}

/// One QEMU run of the example hypervisor.
#[derive(Clone, Debug)]
pub struct Run {
    /// The scenario's configuration number ([`SCENARIOS`]).
    pub scenario: u8,
    /// The GIC version, 2 or 3.
    pub gic: u8,
    /// A VHE host (`HCR_EL2.E2H = 1`) rather than non-VHE.
    pub vhe: bool,
    /// How many CPUs QEMU gives the machine.
    pub smp: u8,
    /// The external guest image of the `external` scenario (the example's
    /// `guest-hello` when `None`).
    pub guest: Option<PathBuf>,
}

impl Run {
    /// Whether the run boots with EL3 ([`machine_option`]): the
    /// `ptimer-offset` scenario, whose physical timer is direct only where
    /// `CNTPOFF_EL2` takes effect, which needs EL3 to allow it. On a CPU
    /// without FEAT_ECV (QEMU 7.2) it is emulated all the same.
    #[must_use]
    pub fn needs_el3(&self) -> bool {
        self.scenario == PTIMER_OFFSET_SCENARIO
    }

    fn word(&self) -> u32 {
        u32::from_le_bytes([self.scenario, u8::from(self.vhe), self.gic, 0]) | (CONFIG_MAGIC << 24)
    }

    /// `periodic gic=v3 mode=nvhe smp=1`.
    #[must_use]
    pub fn describe(&self) -> String {
        let name = scenario_name(self.scenario);
        format!(
            "{name} gic=v{} mode={} smp={}",
            self.gic,
            if self.vhe { "vhe" } else { "nvhe" },
            self.smp
        )
    }
}

/// What a finished run printed and how it ended.
pub struct Outcome {
    /// QEMU exited with success and the `RESULT` line of this run says
    /// `PASS`.
    pub passed: bool,
    /// Everything QEMU printed (the hypervisor's console and QEMU's own
    /// messages), with a note on a timeout or a missing verdict.
    pub output: String,
}

impl Outcome {
    /// The hypervisor's `RESULT` line, if it printed one.
    pub fn result_line(&self) -> Option<&str> {
        self.output.lines().find(|l| l.starts_with("RESULT"))
    }
}

/// The Cargo target directory (`CARGO_TARGET_DIR`, or `target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// Where the [`build_command`] leaves the hypervisor image.
#[must_use]
pub fn image_path() -> PathBuf {
    target_dir().join(TARGET).join("release").join(EXAMPLE)
}

/// Whether the Rust target [`TARGET`] is installed for the `rustc` in use
/// (its standard library is in the sysroot).
#[must_use]
pub fn target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| {
            Path::new(String::from_utf8_lossy(&o.stdout).trim())
                .join("lib/rustlib")
                .join(TARGET)
                .is_dir()
        })
}

/// The `cargo build` of the hypervisor image (release, [`TARGET`]): run
/// it, then find the image at [`image_path`].
#[must_use]
pub fn build_command() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "-p",
        EXAMPLE,
        "--bins",
        "--target",
        TARGET,
    ]);
    cmd
}

/// What a caller of [`boot_with`] adds to a run: more QEMU arguments, its
/// own timeout, an echo of the output.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// Arguments after the machine's own (e.g. `-icount shift=0`).
    pub extra_args: Vec<String>,
    /// How long the run may take before QEMU is killed and the run fails.
    pub timeout: Duration,
    /// Print QEMU's output once it has finished.
    pub echo: bool,
}

impl Default for BootOptions {
    /// No extra argument, [`RUN_TIMEOUT`], no echo.
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            timeout: RUN_TIMEOUT,
            echo: false,
        }
    }
}

/// Boots `image` under `qemu` for `run`, with a timeout. The machine is
/// QEMU's current `virt` (its counter frequency is the QEMU version's:
/// 62.5 MHz on 7.2, 1 GHz from 9.0 on), see [`machine_option`].
pub fn boot(qemu: &Qemu, image: &Path, run: &Run, echo: bool) -> Result<Outcome> {
    boot_with(
        qemu,
        image,
        run,
        &BootOptions {
            echo,
            ..BootOptions::default()
        },
    )
}

/// [`boot`] with `options`: its extra arguments after the machine's, its
/// timeout.
pub fn boot_with(qemu: &Qemu, image: &Path, run: &Run, options: &BootOptions) -> Result<Outcome> {
    let mut cmd = qemu.machine_command();
    cmd.args([
        "-machine",
        &machine_option(run.gic, run.needs_el3()),
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
    cmd.args(&options.extra_args);
    cmd.arg("-kernel").arg(image);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.program.display()))?;
    // Both pipes are drained while QEMU runs, so a chatty QEMU cannot
    // block on a full pipe and be mistaken for a hung run.
    let stdout = drain(child.stdout.take().ok_or("no QEMU stdout")?);
    let stderr = drain(child.stderr.take().ok_or("no QEMU stderr")?);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > options.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = stdout.join().unwrap_or_default();
    output.push_str(&stderr.join().unwrap_or_default());
    if options.echo {
        print!("{output}");
    }
    let Some(status) = status else {
        return Ok(Outcome {
            passed: false,
            output: format!(
                "{output}\n(timed out after {} s)",
                options.timeout.as_secs()
            ),
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
    let scenario = scenario_name(run.scenario);
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
    if line.split_whitespace().last() != Some("PASS") {
        return Err("the RESULT line does not say PASS".into());
    }
    if run.needs_el3() {
        timer_map_as_expected(field("ecv"), field("ptimer"), field("sysreg_exits"))?;
    }
    Ok(())
}

/// The `ptimer-offset` verdict on the timer map, from its `RESULT` fields
/// `ecv`, `ptimer` and `sysreg_exits`, for a machine with EL3: the EL3
/// stage enables FEAT_ECV's offset, so `ecv=off` (FEAT_ECV whose offset
/// has no effect) is a failure, `ecv=on` must give a direct physical timer
/// with no trapped register access, and `ecv=none` (no FEAT_ECV, QEMU 7.2)
/// the emulated one.
fn timer_map_as_expected(
    ecv: Option<&str>,
    ptimer: Option<&str>,
    sysreg_exits: Option<&str>,
) -> std::result::Result<(), String> {
    match (ecv, ptimer) {
        (Some("on"), Some("direct")) => match sysreg_exits {
            Some("0") => Ok(()),
            other => Err(format!(
                "the physical timer is direct, but {} timer register accesses trapped",
                other.unwrap_or("an unknown number of")
            )),
        },
        (Some("none"), Some("emulated")) => Ok(()),
        (Some("off"), _) => Err(
            "FEAT_ECV's physical offset has no effect although the machine has EL3 (ecv=off)"
                .into(),
        ),
        (ecv, ptimer) => Err(format!(
            "ECV {} with a physical timer {}: expected direct with ECV, emulated without",
            ecv.unwrap_or("not reported"),
            ptimer.unwrap_or("not reported")
        )),
    }
}

/// Where an external guest image is loaded (see the README's guest ABI).
pub const GUEST_LOAD_ADDR: &str = "0x48000000";
/// The configuration number of the scenario that runs an external guest.
pub const EXTERNAL_SCENARIO: u8 = 8;

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

/// What one QEMU's matrix gave.
pub struct MatrixReport {
    /// `QEMU <version>`.
    pub qemu: String,
    /// The counter frequencies the runs reported (`cntfrq_hz`), once each.
    pub cntfrq: Vec<u64>,
    /// How many runs there were.
    pub runs: usize,
    /// The runs that failed, described.
    pub failed: Vec<String>,
    /// How long the matrix took.
    pub elapsed: Duration,
}

impl MatrixReport {
    /// `QEMU 7.2.22, CNTFRQ 62.5 MHz: 40 passed, 0 failed in 75 s`.
    pub fn summary(&self) -> String {
        let freq = match self.cntfrq.as_slice() {
            [] => describe_cntfrq(None),
            [one] => describe_cntfrq(Some(*one)),
            many => format!(
                "CNTFRQ {}",
                many.iter()
                    .map(|&hz| mhz(hz))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
        };
        format!(
            "{}, {freq}: {} passed, {} failed in {} s",
            self.qemu,
            self.runs - self.failed.len(),
            self.failed.len(),
            self.elapsed.as_secs()
        )
    }
}

/// The runs of the matrix: every scenario on GICv3 and GICv2, non-VHE and
/// VHE hosts.
pub fn matrix_runs() -> Vec<Run> {
    let mut runs = Vec::new();
    for gic in [3, 2] {
        for vhe in [false, true] {
            for &(_, scenario, smp) in &SCENARIOS {
                runs.push(Run {
                    scenario,
                    gic,
                    vhe,
                    smp,
                    guest: None,
                });
            }
        }
    }
    runs
}

/// Runs the whole matrix on `qemu`, one run after the other (two QEMUs at
/// once on a 2-core machine would make each run's timing depend on the
/// other). Prints one line per run, naming the QEMU version and the counter
/// frequency the hypervisor reported; a failed run prints its output's
/// tail. An error only when a run cannot be started.
pub fn matrix(qemu: &Qemu, image: &Path) -> Result<MatrixReport> {
    let start = Instant::now();
    let runs = matrix_runs();
    let mut report = MatrixReport {
        qemu: qemu.label(),
        cntfrq: Vec::new(),
        runs: runs.len(),
        failed: Vec::new(),
        elapsed: Duration::ZERO,
    };
    say(&format!(
        "==> QEMU matrix on {}: {} runs",
        qemu.label(),
        runs.len()
    ));
    for (i, run) in runs.iter().enumerate() {
        let outcome = boot(qemu, image, run, false)?;
        let line = outcome.result_line().unwrap_or("(no RESULT line)");
        let hz = result_cntfrq(line);
        if let Some(hz) = hz
            && !report.cntfrq.contains(&hz)
        {
            report.cntfrq.push(hz);
        }
        let verdict = if outcome.passed { "ok" } else { "FAILED" };
        say(&format!(
            "{verdict:6} [{:2}/{}] {} {} {:32} {line}",
            i + 1,
            runs.len(),
            qemu.label(),
            describe_cntfrq(hz),
            run.describe()
        ));
        if !outcome.passed {
            say(&tail(&outcome.output, 15));
            report.failed.push(run.describe());
        }
    }
    report.elapsed = start.elapsed();
    say(&format!("qemu: {}", report.summary()));
    Ok(report)
}

/// The last `lines` lines of `text`.
#[must_use]
pub fn tail(text: &str, lines: usize) -> String {
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
    fn ptimer_offset_alone_boots_with_el3() {
        for &(name, scenario, _) in &SCENARIOS {
            assert_eq!(
                run(scenario, 3, false).needs_el3(),
                name == "ptimer-offset",
                "{name}"
            );
        }
        assert_eq!(
            machine_option(2, true),
            "virt,virtualization=on,secure=on,gic-version=2"
        );
        assert_eq!(
            machine_option(3, false),
            "virt,virtualization=on,gic-version=3"
        );
    }

    #[test]
    fn ptimer_offset_passes_only_with_the_timer_map_ecv_allows() {
        let line = |ecv: &str, ptimer: &str, sysreg: u32| {
            format!(
                "RESULT scenario=ptimer-offset gic=v3 mode=vhe sysreg_exits={sysreg} \
                 ecv={ecv} ptimer={ptimer} cntfrq_hz=1 PASS\n"
            )
        };
        let r = run(PTIMER_OFFSET_SCENARIO, 3, true);
        assert_eq!(passing_result(&line("on", "direct", 0), &r), Ok(()));
        assert_eq!(passing_result(&line("none", "emulated", 829), &r), Ok(()));
        // A regression to emulation where ECV works, direct without it,
        // an EL3 stage that left ECV off, traps while direct, no fields.
        assert!(passing_result(&line("on", "emulated", 829), &r).is_err());
        assert!(passing_result(&line("none", "direct", 0), &r).is_err());
        assert!(passing_result(&line("off", "emulated", 829), &r).is_err());
        assert!(passing_result(&line("on", "direct", 3), &r).is_err());
        let bare = "RESULT scenario=ptimer-offset gic=v3 mode=vhe PASS\n";
        assert!(passing_result(bare, &r).is_err());
        // Other scenarios are not held to it.
        let ptimer = "RESULT scenario=ptimer gic=v3 mode=vhe ecv=off ptimer=direct PASS\n";
        assert_eq!(passing_result(ptimer, &run(5, 3, true)), Ok(()));
    }

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

    /// Counter frequencies the fixtures below pick: a common board's
    /// 24 MHz and QEMU 7.2's 62.5 MHz.
    const FIXTURE_HZ: [u64; 2] = [24_000_000, 62_500_000];

    #[test]
    fn the_counter_frequency_is_read_from_the_result_line_when_there() {
        for hz in FIXTURE_HZ {
            let with = LINE.replace(" PASS", &format!(" cntfrq_hz={hz} PASS"));
            assert_eq!(result_cntfrq(&with), Some(hz));
            // The new field does not change the verdict.
            assert_eq!(passing_result(&with, &run(1, 3, false)), Ok(()));
            let failed = with.replace(" PASS", " FAIL");
            assert!(passing_result(&failed, &run(1, 3, false)).is_err());
        }
        assert_eq!(result_cntfrq(LINE), None);
        assert_eq!(result_cntfrq("RESULT cntfrq_hz=x PASS"), None);
        assert_eq!(result_cntfrq("RESULT max_cntfrq_hz=5 PASS"), None);
        assert_eq!(mhz(FIXTURE_HZ[0]), "24 MHz");
        assert_eq!(mhz(FIXTURE_HZ[1]), "62.5 MHz");
        assert_eq!(mhz(FIXTURE_HZ[1] + 1), "62.500001 MHz");
        assert_eq!(describe_cntfrq(None), "CNTFRQ not reported");
    }

    #[test]
    fn the_qemu_version_is_read_from_its_banner() {
        let banner = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n\
                      Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_version(banner), Some("10.0.2"));
        assert_eq!(
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            Some("7.2.22")
        );
        assert_eq!(parse_version("qemu-system-aarch64: not found"), None);
    }

    #[test]
    fn the_matrix_has_every_scenario_on_both_gics_and_host_modes() {
        let runs = matrix_runs();
        assert_eq!(runs.len(), SCENARIOS.len() * 4);
        for gic in [2, 3] {
            for vhe in [false, true] {
                for s in SCENARIOS {
                    assert_eq!(
                        runs.iter()
                            .filter(|r| (r.scenario, r.gic, r.vhe, r.smp) == (s.1, gic, vhe, s.2))
                            .count(),
                        1
                    );
                }
            }
        }
    }

    #[test]
    fn the_bench_scenarios_have_names_but_are_not_in_the_matrix() {
        assert_eq!(scenario_name(10), "perf");
        assert_eq!(scenario_name(12), "perf-ptimer");
        assert_eq!(scenario_name(5), "ptimer");
        assert_eq!(scenario_name(200), "?");
        assert!(
            matrix_runs()
                .iter()
                .all(|r| r.scenario != 10 && r.scenario != 12)
        );
        let line = "RESULT scenario=perf-ptimer gic=v2 mode=vhe vcpus=1 PASS\n";
        assert_eq!(passing_result(line, &run(12, 2, true)), Ok(()));
        assert!(passing_result(line, &run(10, 2, true)).is_err());
        assert_eq!(
            run(12, 2, true).describe(),
            "perf-ptimer gic=v2 mode=vhe smp=1"
        );
    }

    #[test]
    fn boot_options_default_to_the_matrix_timeout_and_no_extra_arguments() {
        let options = BootOptions::default();
        assert_eq!(options.timeout, RUN_TIMEOUT);
        assert!(options.extra_args.is_empty());
        assert!(!options.echo);
    }

    #[test]
    fn the_configuration_word_matches_the_hypervisor_format() {
        // 0xA7GGMMSS: magic, GIC, host mode, scenario.
        assert_eq!(run(7, 2, true).word(), 0xA702_0107);
        assert_eq!(run(1, 3, false).word(), 0xA703_0001);
    }
}
