//! `cargo xtask bench`: the example hypervisor's perf scenarios under
//! QEMU with `-icount shift=0`, on GICv3 and GICv2, non-VHE and VHE: the
//! instructions retired at EL2 and at EL1 and the library's timer register
//! accesses and GIC calls per round trip of each path, counted by the PMU
//! and by counting wrappers in the hypervisor (see the example's
//! `src/hyp/perf.rs`), printed as one table per configuration,
//! beside the same counts for the eager baseline (the example built with
//! its `eager` feature, see its `src/hyp/eager.rs`) and the ratio
//! eager / library of EL2 instructions.
//!
//! Two scenarios per configuration ([`PERF_RUNS`]): `perf` drives the
//! virtual timer with the VM's physical timer emulated (the rows
//! `yield-low` .. `wfi-saved`); `perf-ptimer` drives the physical timer,
//! direct (`PhysTimerMode::Auto` at offset 0, direct on QEMU 7.2 and 10),
//! with the virtual timer armed far ahead beside it (the `ptimer-` rows).
//!
//! The counts are deterministic (`-icount`): `--twice` boots each
//! configuration twice and fails if any count differs. The command fails
//! if a quiet exit (a yield with the timers' lines low, [`QUIET_PATHS`])
//! made any timer register access.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arch_timer_virt_tests::qemu::{BootOptions, Run, boot_with};

use crate::qemu::{self, Choice, Qemu};
use crate::{Result, TARGET};

/// One perf scenario: its name and number (`Scenario::Perf` and
/// `Scenario::PerfPtimer` in the example's `config.rs`) and its paths in
/// the order the hypervisor prints them.
struct PerfRun {
    name: &'static str,
    number: u8,
    paths: [&'static str; 6],
}

/// The perf scenarios each configuration boots, in the table's order.
const PERF_RUNS: [PerfRun; 2] = [
    PerfRun {
        name: "perf",
        number: 10,
        paths: [
            "yield-low",
            "yield-high",
            "vtimer-irq",
            "put-load",
            "wfi-wake",
            "wfi-saved",
        ],
    },
    PerfRun {
        name: "perf-ptimer",
        number: 12,
        paths: [
            "ptimer-yield-low",
            "ptimer-yield-high",
            "ptimer-irq",
            "ptimer-put-load",
            "ptimer-wfi-wake",
            "ptimer-wfi-saved",
        ],
    },
];
/// The quiet exits, one per scenario: their timer register accesses must
/// be 0.
const QUIET_PATHS: [&str; 2] = ["yield-low", "ptimer-yield-low"];
/// How long one perf run may take (it takes well under a second on an
/// idle host).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// What the table says its rows are.
const LEGEND: &str = "vtimer rows (yield-low .. wfi-saved): `perf`, the virtual timer driven, \
                      the VM's physical timer emulated; ptimer-* rows: `perf-ptimer`, the \
                      physical timer driven and direct (PhysTimerMode::Auto, offset 0), the \
                      virtual timer armed far ahead beside it";

/// One path's counts per round trip, in thousandths (the hypervisor
/// prints three decimals).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// The path's name.
    pub(crate) path: String,
    /// Instructions retired at EL2.
    pub(crate) el2: i64,
    /// Of those, the ones inside the run loop's calls into the timer (the
    /// library's or the eager baseline's, with the GIC calls it makes).
    pub(crate) el2_timer: i64,
    /// Instructions retired at EL1.
    pub(crate) el1: i64,
    /// Timer register accesses the library made.
    pub(crate) timer: i64,
    /// GIC calls the library made.
    pub(crate) gic: i64,
}

/// `cargo xtask bench [--qemu 7|10|PATH]... [--twice] [--under-load]`;
/// `--model`: the
/// host model's report instead.
pub(crate) fn bench(args: &[String], caller_dir: &Path) -> Result {
    if args.iter().any(|a| a == "--model") {
        if args.len() > 1 {
            return Err("bench --model takes no other option".into());
        }
        return crate::bench_model();
    }
    let (options, rest) = qemu::Options::take(args, caller_dir, &[Choice::Distro])?;
    if rest.iter().any(|a| a == "--quick") {
        if rest.len() > 1 {
            return Err("bench --quick takes only the QEMU options".into());
        }
        crate::ensure_target()?;
        return quick(&options);
    }
    let mut twice = false;
    let mut eager = true;
    for arg in &rest {
        match arg.as_str() {
            "--twice" => twice = true,
            "--library-only" => eager = false,
            other => return Err(format!("bench: unknown option `{other}`")),
        }
    }
    crate::ensure_target()?;
    // The eager build first, so that the default build is the one left
    // in place for the other commands.
    let eager_image = if eager { Some(build_copy(true)?) } else { None };
    let image = build_copy(false)?;
    // The counts do not depend on the host's load (-icount): --under-load
    // shows it.
    let _load = options.under_load.then(crate::load::Load::start);
    let mut problems = Vec::new();
    for choice in &options.qemus {
        let q = qemu::resolve(choice)?;
        for gic in [3_u8, 2] {
            for vhe in [false, true] {
                let mode = if vhe { "vhe" } else { "nvhe" };
                let title = format!("{}, GICv{gic}, {mode}", q.label());
                let rows = match runs(&q, &image, gic, vhe, twice) {
                    Ok(rows) => rows,
                    Err(e) => {
                        problems.push(format!("{title}: {e}"));
                        continue;
                    }
                };
                let eager_rows = match &eager_image {
                    Some(image) => match runs(&q, image, gic, vhe, twice) {
                        Ok(rows) => Some(rows),
                        Err(e) => {
                            problems.push(format!("{title}, eager: {e}"));
                            None
                        }
                    },
                    None => None,
                };
                if twice {
                    println!("{title}: two runs of each build, identical counts");
                }
                print!("{}", table(&title, &rows, eager_rows.as_deref()));
                if let Err(e) = quiet_exit_check(&rows) {
                    problems.push(format!("{title}: {e}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// `cargo xtask test`'s share of the bench (and `bench --quick`): the
/// library's perf scenarios
/// once on the first QEMU of `options` (GICv3, non-VHE, a few seconds):
/// the table must be produced and the quiet exits make no timer register
/// access.
pub(crate) fn quick(options: &qemu::Options) -> Result {
    let choice = options.qemus.first().ok_or("no QEMU to run")?;
    let q = qemu::resolve(choice)?;
    let image = qemu::build()?;
    let rows = run(&q, &image, 3, false)?;
    print!(
        "{}",
        table(&format!("{}, GICv3, nvhe", q.label()), &rows, None)
    );
    quiet_exit_check(&rows)
}

/// Builds the hypervisor (with the `eager` feature or not) and copies the
/// image beside it, named for the build.
fn build_copy(eager: bool) -> Result<PathBuf> {
    let mut args = vec![
        "build",
        "--release",
        "-p",
        "qemu-hypervisor",
        "--bins",
        "--target",
        TARGET,
    ];
    if eager {
        args.extend(["--features", "eager"]);
    }
    crate::cargo(&args)?;
    let dir = qemu::target_dir().join(TARGET).join("release");
    let name = if eager { "eager" } else { "library" };
    let copy = dir.join(format!("qemu-hypervisor-bench-{name}"));
    std::fs::copy(dir.join("qemu-hypervisor"), &copy)
        .map_err(|e| format!("cannot copy the image to {}: {e}", copy.display()))?;
    Ok(copy)
}

/// Boots the perf scenarios once (twice with `twice`, failing if the
/// counts differ) and returns their rows.
fn runs(q: &Qemu, image: &Path, gic: u8, vhe: bool, twice: bool) -> Result<Vec<Row>> {
    let rows = run(q, image, gic, vhe)?;
    if twice && run(q, image, gic, vhe)? != rows {
        return Err(format!(
            "two runs of {} gave different counts",
            image.display()
        ));
    }
    Ok(rows)
}

/// Boots each perf scenario ([`PERF_RUNS`]) once and returns their rows,
/// in order.
fn run(q: &Qemu, image: &Path, gic: u8, vhe: bool) -> Result<Vec<Row>> {
    let options = BootOptions {
        extra_args: vec!["-icount".into(), "shift=0".into()],
        timeout: RUN_TIMEOUT,
        echo: false,
    };
    let mut rows = Vec::new();
    for perf in &PERF_RUNS {
        let run = Run {
            scenario: perf.number,
            gic,
            vhe,
            smp: 1,
            guest: None,
        };
        let outcome = boot_with(q, image, &run, &options)?;
        let tail = || crate::qemu::tail(&outcome.output, 12);
        if !outcome.passed {
            return Err(format!("the {} run failed:\n{}", perf.name, tail()));
        }
        rows.extend(parse(&outcome.output, perf).map_err(|e| format!("{e}:\n{}", tail()))?);
    }
    Ok(rows)
}

/// The rows of a run of `perf`'s output: one `PERF` line per path, all of
/// its paths in order, and a passing `RESULT` line of that scenario.
fn parse(output: &str, perf: &PerfRun) -> Result<Vec<Row>> {
    let rows = output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PERF "))
        .map(parse_line)
        .collect::<Result<Vec<Row>>>()?;
    let names: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    if names != perf.paths {
        return Err(format!(
            "PERF lines for {names:?}, expected {:?} in that order",
            perf.paths
        ));
    }
    let scenario = format!(" scenario={} ", perf.name);
    let passed = output.lines().any(|l| {
        l.starts_with("RESULT ") && l.contains(&scenario) && l.trim_end().ends_with(" PASS")
    });
    if !passed {
        return Err(format!(
            "no passing RESULT line of the {} scenario",
            perf.name
        ));
    }
    Ok(rows)
}

/// One `PERF` line's fields after the `PERF ` prefix.
fn parse_line(fields: &str) -> Result<Row> {
    let field = |key: &str| -> Result<&str> {
        fields
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or(format!("PERF line without {key}=: `{fields}`"))
    };
    let number = |key: &str| -> Result<i64> {
        let text = field(key)?;
        thousandths(text).ok_or(format!("PERF {key}={text}: not a number with 3 decimals"))
    };
    Ok(Row {
        path: field("path")?.to_owned(),
        el2: number("el2")?,
        el2_timer: number("el2_timer")?,
        el1: number("el1")?,
        timer: number("timer")?,
        gic: number("gic")?,
    })
}

/// `"599.007"` as 599007; `None` unless it has exactly three decimals.
fn thousandths(text: &str) -> Option<i64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = text.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.len() != 3 || !digits(frac) {
        return None;
    }
    let value = whole.parse::<i64>().ok()?.checked_mul(1000)? + frac.parse::<i64>().ok()?;
    Some(if negative { -value } else { value })
}

/// `n` thousandths with three decimals.
fn decimal(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let n = n.unsigned_abs();
    format!("{sign}{}.{:03}", n / 1000, n % 1000)
}

/// `eager / library` with two decimals (`-` if the library's is 0).
fn ratio(library: i64, eager: i64) -> String {
    if library <= 0 {
        return "-".into();
    }
    let hundredths = (eager * 100 + library / 2) / library;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// The table of one configuration, in Markdown: the library's counts, and
/// with `eager` the baseline's beside them.
pub(crate) fn table(title: &str, rows: &[Row], eager: Option<&[Row]>) -> String {
    let mut out = format!(
        "\n{title} (-icount shift=0; per round trip: (count of 1100 - count of 100) / 1000)\n\
         {LEGEND}\n\n"
    );
    let Some(eager) = eager else {
        out.push_str(
            "| path | EL2 insns | EL2 timer code | EL2 rest | EL1 insns | timer reg accesses \
             | GIC calls |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.path,
                decimal(r.el2),
                decimal(r.el2_timer),
                decimal(r.el2 - r.el2_timer),
                decimal(r.el1),
                decimal(r.timer),
                decimal(r.gic)
            ));
        }
        return out;
    };
    out.push_str(
        "| path | EL2 library | EL2 eager | eager / library | EL2 timer code library \
         | EL2 timer code eager | EL2 rest library | EL2 rest eager | EL1 library | EL1 eager \
         | timer reg library | timer reg eager | GIC calls library | GIC calls eager |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let Some(e) = eager.iter().find(|e| e.path == r.path) else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.path,
            decimal(r.el2),
            decimal(e.el2),
            ratio(r.el2, e.el2),
            decimal(r.el2_timer),
            decimal(e.el2_timer),
            decimal(r.el2 - r.el2_timer),
            decimal(e.el2 - e.el2_timer),
            decimal(r.el1),
            decimal(e.el1),
            decimal(r.timer),
            decimal(e.timer),
            decimal(r.gic),
            decimal(e.gic)
        ));
    }
    out
}

/// The quiet exits ([`QUIET_PATHS`]) make no timer register access.
fn quiet_exit_check(rows: &[Row]) -> Result {
    for quiet in QUIET_PATHS {
        match rows.iter().find(|r| r.path == quiet) {
            Some(r) if r.timer == 0 => {}
            Some(r) => {
                return Err(format!(
                    "the quiet exit ({quiet}) made {} timer register accesses per round trip, \
                     expected 0",
                    decimal(r.timer)
                ));
            }
            None => return Err(format!("no {quiet} row")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
hv: EL2, scenario perf, host mode nvhe, GIC v3, counter 62500000 Hz
PERF path=yield-low n1=100 n2=1100 el2=599.000 el2_timer=80.000 el1=14.000 timer=0.000 gic=0.000 el2_n1=1 el2_n2=2
PERF path=yield-high n1=100 n2=1100 el2=794.000 el2_timer=107.000 el1=14.000 timer=2.000 gic=0.000 el2_n1=1 el2_n2=2
PERF path=vtimer-irq n1=100 n2=1100 el2=1652.000 el2_timer=734.000 el1=132.000 timer=3.000 gic=1.000 el2_n1=1 el2_n2=2
PERF path=put-load n1=100 n2=1100 el2=2252.000 el2_timer=628.000 el1=17.000 timer=10.000 gic=3.000 el2_n1=1 el2_n2=2
PERF path=wfi-wake n1=100 n2=1100 el2=3793.007 el2_timer=2006.006 el1=210.000 timer=9.000 gic=6.000 el2_n1=1 el2_n2=2
PERF path=wfi-saved n1=100 n2=1100 el2=4012.003 el2_timer=2106.002 el1=210.000 timer=13.000 gic=6.000 el2_n1=1 el2_n2=2
[vcpu0] guest 0: perf done, status 0, 2402 interrupts, 0 lost
RESULT scenario=perf gic=v3 mode=nvhe vcpus=1 delivered=2402 PASS
";

    /// [`OUTPUT`] as the `perf-ptimer` scenario prints it.
    fn ptimer_output() -> String {
        OUTPUT
            .replace("path=vtimer-irq", "path=ptimer-irq")
            .replace("path=", "path=ptimer-")
            .replace("path=ptimer-ptimer-irq", "path=ptimer-irq")
            .replace("scenario perf,", "scenario perf-ptimer,")
            .replace("scenario=perf ", "scenario=perf-ptimer ")
    }

    /// The rows of both scenarios, as a configuration's run returns them.
    fn both() -> Vec<Row> {
        let mut rows = parse(OUTPUT, &PERF_RUNS[0]).unwrap();
        rows.extend(parse(&ptimer_output(), &PERF_RUNS[1]).unwrap());
        rows
    }

    #[test]
    fn a_perf_run_parses_into_one_row_per_path() {
        let rows = both();
        assert_eq!(rows.len(), 12);
        assert_eq!(
            rows[4],
            Row {
                path: "wfi-wake".into(),
                el2: 3_793_007,
                el2_timer: 2_006_006,
                el1: 210_000,
                timer: 9000,
                gic: 6000,
            }
        );
        assert_eq!(rows[5].path, "wfi-saved");
        assert_eq!(rows[5].timer, 13_000);
        assert_eq!(rows[10].path, "ptimer-wfi-wake");
        assert_eq!(rows[10].el2, rows[4].el2);
        assert_eq!(rows[11].path, "ptimer-wfi-saved");
        assert!(quiet_exit_check(&rows).is_ok());
        let text = table("QEMU 7.2.22, GICv3, nvhe", &rows, None);
        assert!(text.contains(LEGEND));
        assert!(
            text.contains(
                "| ptimer-irq | 1652.000 | 734.000 | 918.000 | 132.000 | 3.000 | 1.000 |"
            )
        );
        assert!(
            text.contains(
                "| wfi-wake | 3793.007 | 2006.006 | 1787.001 | 210.000 | 9.000 | 6.000 |"
            )
        );
        assert!(
            text.contains("| yield-low | 599.000 | 80.000 | 519.000 | 14.000 | 0.000 | 0.000 |")
        );
        let mut eager = rows.clone();
        eager[0].el2 = 1_076_000;
        eager[0].el2_timer = 557_000;
        eager[0].timer = 11_000;
        let text = table("QEMU 7.2.22, GICv3, nvhe", &rows, Some(&eager));
        assert!(text.contains(
            "| yield-low | 599.000 | 1076.000 | 1.80 | 80.000 | 557.000 | 519.000 | 519.000 | 14.000 \
             | 14.000 | 0.000 | 11.000 | 0.000 | 0.000 |"
        ));
        assert!(text.contains("| put-load | 2252.000 | 2252.000 | 1.00 |"));
        assert!(text.contains("| ptimer-put-load | 2252.000 | 2252.000 | 1.00 |"));
    }

    #[test]
    fn each_scenario_needs_its_own_paths_and_result_line() {
        let ptimer = ptimer_output();
        assert!(parse(&ptimer, &PERF_RUNS[0]).is_err());
        assert!(parse(OUTPUT, &PERF_RUNS[1]).is_err());
        // The ptimer's paths with the vtimer scenario's verdict.
        let mislabelled = ptimer.replace("scenario=perf-ptimer ", "scenario=perf ");
        assert!(parse(&mislabelled, &PERF_RUNS[1]).is_err());
        // The vtimer's names, once renamed, in the wrong order.
        let swapped = ptimer
            .replace("path=ptimer-yield-low", "path=X")
            .replace("path=ptimer-yield-high", "path=ptimer-yield-low")
            .replace("path=X", "path=ptimer-yield-high");
        assert!(parse(&swapped, &PERF_RUNS[1]).is_err());
    }

    #[test]
    fn a_missing_path_or_failed_run_is_an_error() {
        let without = OUTPUT.replace("PERF path=put-load", "PERF path=other");
        assert!(parse(&without, &PERF_RUNS[0]).is_err());
        let failed = OUTPUT.replace(" PASS", " FAIL");
        assert!(parse(&failed, &PERF_RUNS[0]).is_err());
        let cut: String = OUTPUT
            .lines()
            .filter(|l| !l.contains("wfi-wake"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse(&cut, &PERF_RUNS[0]).is_err());
        let bad = OUTPUT.replace("el1=132.000", "el1=132");
        assert!(parse(&bad, &PERF_RUNS[0]).is_err());
    }

    #[test]
    fn a_quiet_exit_with_a_timer_access_fails() {
        let noisy = OUTPUT.replace(
            "path=yield-low n1=100 n2=1100 el2=599.000 el2_timer=80.000 el1=14.000 timer=0.000",
            "path=yield-low n1=100 n2=1100 el2=599.000 el2_timer=80.000 el1=14.000 timer=0.001",
        );
        let mut rows = parse(&noisy, &PERF_RUNS[0]).unwrap();
        rows.extend(parse(&ptimer_output(), &PERF_RUNS[1]).unwrap());
        assert!(quiet_exit_check(&rows).is_err());
        // The ptimer-direct quiet exit is checked too.
        let mut rows = parse(OUTPUT, &PERF_RUNS[0]).unwrap();
        let noisy = ptimer_output().replace(
            "path=ptimer-yield-low n1=100 n2=1100 el2=599.000 el2_timer=80.000 el1=14.000 \
             timer=0.000",
            "path=ptimer-yield-low n1=100 n2=1100 el2=599.000 el2_timer=80.000 el1=14.000 \
             timer=1.000",
        );
        rows.extend(parse(&noisy, &PERF_RUNS[1]).unwrap());
        assert!(quiet_exit_check(&rows).is_err());
        // A missing quiet row fails.
        let rows = parse(OUTPUT, &PERF_RUNS[0]).unwrap();
        assert!(quiet_exit_check(&rows).is_err());
        assert!(quiet_exit_check(&both()).is_ok());
    }

    #[test]
    fn numbers_need_three_decimals() {
        assert_eq!(thousandths("599.000"), Some(599_000));
        assert_eq!(thousandths("-2.500"), Some(-2500));
        assert_eq!(thousandths("0.007"), Some(7));
        assert_eq!(thousandths("599"), None);
        assert_eq!(thousandths("599.0"), None);
        assert_eq!(thousandths("a.000"), None);
        assert_eq!(decimal(-2500), "-2.500");
        assert_eq!(decimal(3_793_007), "3793.007");
        assert_eq!(ratio(599_000, 1_076_000), "1.80");
        assert_eq!(ratio(2_252_000, 2_225_994), "0.99");
        assert_eq!(ratio(0, 5), "-");
    }
}
