//! `cargo xtask linux`: an unmodified arm64 Linux kernel under the example
//! hypervisor.
//!
//! - Provisioning: Debian's arm64 kernel (`linux-image-arm64`, resolved to
//!   the versioned `linux-image-*-arm64` package it depends on) and
//!   `busybox-static`, fetched with apt and unpacked under
//!   `target/linux/root` (as root this is done here; otherwise the exact
//!   commands are printed). `--root DIR` uses a tree unpacked elsewhere.
//!   The unpacked kernel and busybox are checked against their packages'
//!   MD5 sums when the packages are kept beside the tree.
//! - The initramfs: a `newc` cpio archive written here (no external tool)
//!   holding busybox, the project's timer check program
//!   (`examples/linux-timer-check`, built here for `aarch64-unknown-none`)
//!   and an `/init` script that prints the guest's timer facts, runs the
//!   check and powers off through PSCI (`poweroff -f`).
//! - The run: QEMU's generic loader puts the kernel `Image` and the
//!   initramfs at fixed guest-physical addresses and a boot-info block
//!   (the initramfs size) next to the configuration word; the hypervisor
//!   builds the guest's device tree and enters the kernel (see
//!   `examples/qemu-hypervisor/src/platform/boot.rs` for the contract).
//! - One run (`cargo xtask linux`, `demo --linux`) shows the console; the
//!   runs of [`CONFIGS`] ([`matrix`], after each QEMU matrix of
//!   `cargo xtask test`) print one `LINUX` line each.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linux_timer_check::Summary;

use crate::Result;
use crate::qemu::{MatrixReport, Qemu};

/// The scenario number of the Linux guest in the configuration word
/// (`Scenario::Linux` in the example's `config.rs`).
const LINUX_SCENARIO: u8 = 9;
/// The configuration word's address and magic (the example's `config.rs`).
const CONFIG_ADDR: u64 = 0x4700_0000;
const CONFIG_MAGIC: u32 = 0xA7;
/// The boot-info block (the example's `platform/boot.rs`): a magic word,
/// then the initramfs size in bytes.
const BOOT_INFO_ADDR: u64 = 0x4700_0100;
const BOOT_INFO_MAGIC: u32 = u32::from_le_bytes(*b"LNXB");
/// Where QEMU's loader puts the kernel `Image` (2 MiB aligned, the start of
/// the guest's RAM).
const KERNEL_ADDR: u64 = 0x4800_0000;
/// Where QEMU's loader puts the initramfs.
const INITRD_ADDR: u64 = 0x5000_0000;
/// The largest initramfs the guest's layout has room for.
const INITRD_MAX: u64 = 0x0800_0000;
/// QEMU's RAM: the guest's 256 MiB from [`KERNEL_ADDR`] must fit.
const QEMU_RAM: &str = "512M";
/// How long the run may take by default, in seconds of wall-clock time.
const DEFAULT_TIMEOUT: u64 = 300;
/// The marker the `/init` script prints before powering off.
const INIT_DONE: &str = "ATV-INIT: done";
/// What `cargo xtask linux` types at the guest's console, once at the
/// start and once when user space is up: the guest's terminal echoes it
/// as a line of its own, and each time the guest's UART interrupt
/// (`uart-pl011` in `/proc/interrupts`) takes it.
const CONSOLE_INPUT: &[u8] = b"atv-console-input\n";
/// The console line after which the input is typed a second time.
const USER_SPACE_UP: &str = "ATV-INIT: user space up at ";

/// Where provisioning unpacks the Debian packages.
fn default_root() -> PathBuf {
    target_dir().join("linux").join("root")
}

/// Cargo's target directory, as `qemu::build` finds it.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// The Linux configurations `cargo xtask test` runs on every QEMU: GICv3
/// and GICv2, non-VHE and VHE hosts, each with 1 vCPU, with 2 vCPUs on
/// 2 CPUs, and with 2 vCPUs time-sliced on 1 CPU (put/load at every
/// switch).
pub(crate) const CONFIGS: [Config; 12] = {
    const fn c(gic: u8, vhe: bool, vcpus: u8, host_cpus: u8) -> Config {
        Config {
            gic,
            vhe,
            vcpus,
            host_cpus,
        }
    }
    [
        c(3, false, 1, 1),
        c(3, true, 1, 1),
        c(2, false, 1, 1),
        c(2, true, 1, 1),
        c(3, false, 2, 2),
        c(3, true, 2, 2),
        c(2, false, 2, 2),
        c(2, true, 2, 2),
        c(3, false, 2, 1),
        c(3, true, 2, 1),
        c(2, false, 2, 1),
        c(2, true, 2, 1),
    ]
};

/// How long one Linux run of the matrix may take, in seconds of wall-clock
/// time: a boot takes about half a minute under TCG, twice that with
/// every core busy.
const MATRIX_TIMEOUT: u64 = 150;

/// One Linux configuration: what the configuration word and QEMU's
/// machine options are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// GIC version, 2 or 3.
    pub(crate) gic: u8,
    /// A VHE host (`HCR_EL2.E2H`) rather than a non-VHE one.
    pub(crate) vhe: bool,
    /// The guest's vCPUs (1 or 2).
    pub(crate) vcpus: u8,
    /// The physical CPUs they run on, QEMU's `-smp`: `vcpus` (vCPU n on
    /// CPU n) or 1 (all time-sliced on CPU 0).
    pub(crate) host_cpus: u8,
}

impl Config {
    /// One vCPU on one CPU, GICv3, non-VHE: `cargo xtask linux`'s default.
    const DEFAULT: Self = Self {
        gic: 3,
        vhe: false,
        vcpus: 1,
        host_cpus: 1,
    };

    /// `gic=v3 mode=nvhe vcpus=2 host_cpus=1`, as the `RESULT` lines say it.
    fn describe(&self) -> String {
        format!(
            "gic=v{} mode={} vcpus={} host_cpus={}",
            self.gic,
            if self.vhe { "vhe" } else { "nvhe" },
            self.vcpus,
            self.host_cpus
        )
    }

    /// The boot-info block's third word: vCPUs in bits 7:0, physical CPUs
    /// in bits 15:8 (`platform::boot::Smp` in the hypervisor).
    fn smp_word(&self) -> u32 {
        u32::from(self.vcpus) | (u32::from(self.host_cpus) << 8)
    }
}

/// What `cargo xtask linux` (and `demo --linux`) was asked for.
#[derive(Debug)]
struct Options {
    config: Config,
    root: Option<PathBuf>,
    timeout: u64,
    provision_only: bool,
    qemu: crate::qemu::Options,
}

/// Parses `[--gic 2|3] [--mode vhe|nvhe] [--smp N] [--host-cpus 1|N]
/// [--root DIR] [--timeout SECONDS] [--provision-only] [--qemu 7|10|PATH]
/// [--under-load]`; a relative `DIR` or `PATH` is taken from `caller_dir`.
///
/// `--smp N`: the guest's vCPUs (1 or 2); `--host-cpus`: the physical CPUs
/// they run on, QEMU's `-smp` (N by default: vCPU n on CPU n; 1: all
/// time-sliced on CPU 0). Passed in the boot-info block's third word
/// (`N | host_cpus << 8`).
fn parse_options(args: &[String], caller_dir: &Path) -> Result<Options> {
    let (qemu, rest) =
        crate::qemu::Options::take(args, caller_dir, &[crate::qemu::Choice::Distro])?;
    let mut o = Options {
        config: Config::DEFAULT,
        root: None,
        timeout: DEFAULT_TIMEOUT,
        provision_only: false,
        qemu,
    };
    let mut host_cpus = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--gic" => {
                o.config.gic = match value()?.as_str() {
                    "2" | "v2" => 2,
                    "3" | "v3" => 3,
                    other => return Err(format!("--gic takes 2 or 3, not `{other}`")),
                }
            }
            "--mode" => {
                o.config.vhe = match value()?.as_str() {
                    "vhe" => true,
                    "nvhe" => false,
                    other => return Err(format!("--mode takes vhe or nvhe, not `{other}`")),
                }
            }
            "--root" => o.root = Some(caller_dir.join(value()?)),
            "--timeout" => {
                o.timeout = value()?.parse().map_err(|e| format!("--timeout: {e}"))?;
            }
            "--provision-only" => o.provision_only = true,
            "--smp" => {
                o.config.vcpus = match value()?.as_str() {
                    "1" => 1,
                    "2" => 2,
                    other => return Err(format!("--smp takes 1 or 2, not `{other}`")),
                }
            }
            "--host-cpus" => {
                host_cpus = Some(
                    value()?
                        .parse::<u8>()
                        .map_err(|e| format!("--host-cpus: {e}"))?,
                );
            }
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    let vcpus = o.config.vcpus;
    o.config.host_cpus = host_cpus.unwrap_or(vcpus);
    if o.config.host_cpus != 1 && o.config.host_cpus != vcpus {
        return Err(format!(
            "--host-cpus takes 1 or the vCPU count ({vcpus}), not {}",
            o.config.host_cpus
        ));
    }
    o.qemu.single()?;
    Ok(o)
}

/// `cargo xtask linux`: one boot with the console shown, then what the
/// guest's checks found.
pub(crate) fn linux(args: &[String], caller_dir: &Path) -> Result {
    let o = parse_options(args, caller_dir)?;
    let guest = prepare(o.root.as_deref())?;
    if o.provision_only {
        return Ok(());
    }
    let q = crate::qemu::resolve(o.qemu.single()?)?;
    crate::ensure_target()?;
    let image = crate::qemu::build()?;
    println!(
        "==> booting Linux under the example hypervisor on {}: {}",
        q.label(),
        o.config.describe()
    );
    let run = LinuxRun {
        config: o.config,
        timeout: Duration::from_secs(o.timeout),
    };
    let load = o.qemu.under_load.then(crate::load::Load::start);
    let report = boot(&q, &image, &guest, &run, true);
    drop(load);
    let report = report?;
    println!("\n==> how far Linux got");
    println!("{}", report.summary());
    println!("{}", report.result_line(&run));
    if report.passed {
        Ok(())
    } else {
        Err("the Linux guest did not complete its checks".into())
    }
}

/// A Linux guest ready to boot: the kernel, its tick rate, and the
/// initramfs written for it.
pub(crate) struct Guest {
    kernel: PathBuf,
    /// The kernel's `CONFIG_HZ`, when its config file is there.
    tick_hz: Option<u64>,
    initrd: PathBuf,
    initrd_len: u64,
}

/// Provides the kernel and busybox (provisioning them under `target/` unless
/// `root` names a tree unpacked elsewhere), builds the timer check
/// program, and writes the initramfs.
pub(crate) fn prepare(root: Option<&Path>) -> Result<Guest> {
    let root = match root {
        Some(root) => root.to_owned(),
        None => {
            let root = default_root();
            provision(&root)?;
            root
        }
    };
    let files = find_files(&root)?;
    verify_unpacked(&root, &files)?;
    println!(
        "==> kernel {} ({}), busybox {}",
        files.kernel.display(),
        files.header.describe(),
        files.busybox.display()
    );
    let busybox =
        std::fs::read(&files.busybox).map_err(|e| format!("{}: {e}", files.busybox.display()))?;
    crate::ensure_target()?;
    let check_path = build_check()?;
    let check = std::fs::read(&check_path).map_err(|e| format!("{}: {e}", check_path.display()))?;
    let initramfs = initramfs(&busybox, &check)?;
    let initrd_path = target_dir().join("linux").join("initramfs.cpio");
    if let Some(dir) = initrd_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&initrd_path, &initramfs)
        .map_err(|e| format!("{}: {e}", initrd_path.display()))?;
    println!(
        "==> initramfs {} ({} bytes)",
        initrd_path.display(),
        initramfs.len()
    );
    Ok(Guest {
        tick_hz: kernel_tick_hz(&files.kernel),
        kernel: files.kernel,
        initrd: initrd_path,
        initrd_len: u64::try_from(initramfs.len()).unwrap_or(u64::MAX),
    })
}

/// The timer check program's package (`examples/linux-timer-check`).
pub(crate) const CHECK_PACKAGE: &str = "linux-timer-check";

/// Builds the timer check program for the guest and returns its path.
fn build_check() -> Result<PathBuf> {
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        CHECK_PACKAGE,
        "--bins",
        "--target",
        crate::TARGET,
    ])?;
    Ok(target_dir()
        .join(crate::TARGET)
        .join("release")
        .join(CHECK_PACKAGE))
}

/// The files of an unpacked kernel and busybox.
struct LinuxFiles {
    kernel: PathBuf,
    header: ImageHeader,
    busybox: PathBuf,
}

/// Finds `boot/vmlinuz-*` and `bin/busybox` under `root` and checks the
/// kernel is an arm64 `Image`.
fn find_files(root: &Path) -> Result<LinuxFiles> {
    let boot = root.join("boot");
    let mut kernels: Vec<PathBuf> = std::fs::read_dir(&boot)
        .map_err(|e| {
            format!(
                "{}: {e} (provision with `cargo xtask linux --provision-only`)",
                boot.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    let kernel = kernels
        .pop()
        .ok_or(format!("no boot/vmlinuz-* under {}", root.display()))?;
    let mut head = [0_u8; 64];
    std::fs::File::open(&kernel)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| {
            format!(
                "{}: {e} (a truncated download? delete it and provision again)",
                kernel.display()
            )
        })?;
    let header = ImageHeader::parse(&head).map_err(|e| {
        format!(
            "{}: {e} (a corrupt download? delete it and provision again)",
            kernel.display()
        )
    })?;
    let busybox = root.join("bin").join("busybox");
    let mut magic = [0_u8; 4];
    std::fs::File::open(&busybox)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("{}: {e}", busybox.display()))?;
    if magic != *b"\x7fELF" {
        return Err(format!("{} is not an ELF file", busybox.display()));
    }
    Ok(LinuxFiles {
        kernel,
        header,
        busybox,
    })
}

/// Checks the unpacked kernel and busybox against the MD5 sums their
/// packages ship (`dpkg-deb --info <deb> md5sums`) when the packages are
/// kept beside `root` (provisioning keeps them in `debs/`): a file damaged
/// or truncated after unpacking is named, with what to do, before a boot
/// could stop somewhere in the kernel. Without the packages (a tree given
/// with `--root`), only the headers are checked ([`find_files`]).
fn verify_unpacked(root: &Path, files: &LinuxFiles) -> Result {
    let debs = root.with_file_name("debs");
    let Ok(entries) = std::fs::read_dir(&debs) else {
        return Ok(());
    };
    let mut sums = String::new();
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "deb") {
            let out = Command::new("dpkg-deb")
                .arg("--info")
                .arg(&path)
                .arg("md5sums")
                .output()
                .map_err(|e| format!("dpkg-deb: {e}"))?;
            sums.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    for file in [&files.kernel, &files.busybox] {
        let Some(relative) = file.strip_prefix(root).ok().and_then(Path::to_str) else {
            continue;
        };
        // Several versions of a package may be kept: any one of them.
        let wanted = packaged_md5(&sums, relative);
        if wanted.is_empty() {
            continue;
        }
        let out = Command::new("md5sum")
            .arg(file)
            .output()
            .map_err(|e| format!("md5sum: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let got = text.split_whitespace().next().unwrap_or("");
        if !wanted.contains(&got) {
            return Err(format!(
                "{}: MD5 {got}, its package says {}: a corrupt or truncated file. \
                 Delete {} and provision again (`cargo xtask linux --provision-only`)",
                file.display(),
                wanted.join(" or "),
                root.display()
            ));
        }
    }
    Ok(())
}

/// The MD5 sums `md5sums` (packages' lists: `<md5>  <path>` per line,
/// paths relative to `/`) give for `path`, one per package listing it.
fn packaged_md5<'a>(md5sums: &'a str, path: &str) -> Vec<&'a str> {
    md5sums
        .lines()
        .filter_map(|line| {
            let (sum, file) = line.split_once("  ")?;
            (file.trim() == path && sum.len() == 32).then_some(sum)
        })
        .collect()
}

/// The fields of an arm64 `Image` header the run relies on (Linux's
/// `Documentation/arch/arm64/booting.rst`); the hypervisor checks them
/// again on its side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ImageHeader {
    text_offset: u64,
    image_size: u64,
    flags: u64,
}

impl ImageHeader {
    /// Parses the first 64 bytes of an `Image`.
    fn parse(head: &[u8; 64]) -> Result<Self> {
        let word = |at: usize| {
            head.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        if head.get(56..60) != Some(b"ARM\x64") {
            return Err(
                "not an arm64 Image (no \"ARM\\x64\" magic at offset 56; an EFI zboot or \
                        compressed kernel must be unpacked first)"
                    .into(),
            );
        }
        let header = Self {
            text_offset: word(8),
            image_size: word(16),
            flags: word(24),
        };
        if header.flags & 1 != 0 {
            return Err("a big-endian kernel".into());
        }
        if header.image_size == 0 {
            return Err("image_size 0: a kernel older than 3.17, not supported".into());
        }
        Ok(header)
    }

    fn describe(&self) -> String {
        let page = match (self.flags >> 1) & 3 {
            1 => "4K pages",
            2 => "16K pages",
            3 => "64K pages",
            _ => "page size unspecified",
        };
        format!(
            "arm64 Image, text_offset {:#x}, image_size {:#x}, {page}",
            self.text_offset, self.image_size
        )
    }
}

/// Debian's architecture name for the guest's packages.
const ARCH: &str = "arm64";

/// Unpacks the kernel and busybox under `root` unless they are there.
fn provision(root: &Path) -> Result {
    if find_files(root).is_ok() {
        return Ok(());
    }
    let debs = root.with_file_name("debs");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let has_apt = Command::new("apt-get").arg("--version").output().is_ok();
    if !is_root || !has_apt {
        return Err(format!(
            "the arm64 kernel and busybox are not unpacked under {root}. On Debian, as root:\n\
             \n  dpkg --add-architecture {ARCH} && apt-get update\
             \n  apt-cache depends linux-image-{ARCH}:{ARCH}   # names linux-image-<version>-{ARCH}\
             \n  mkdir -p {debs} && cd {debs}\
             \n  apt-get download linux-image-<version>-{ARCH}:{ARCH} busybox-static:{ARCH}\
             \n  for d in *.deb; do dpkg -x \"$d\" {root}; done\n\
             \nthen run this again (or pass --root DIR for a tree unpacked elsewhere).",
            root = root.display(),
            debs = debs.display()
        ));
    }
    println!("==> provisioning the {ARCH} kernel and busybox-static with apt");
    let foreign = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .map_err(|e| format!("dpkg: {e}"))?;
    if !String::from_utf8_lossy(&foreign.stdout)
        .lines()
        .any(|l| l.trim() == ARCH)
    {
        crate::run(Command::new("dpkg").args(["--add-architecture", ARCH]))?;
    }
    crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
    let depends = Command::new("apt-cache")
        .args(["depends", &format!("linux-image-{ARCH}:{ARCH}")])
        .output()
        .map_err(|e| format!("apt-cache: {e}"))?;
    let kernel_package =
        versioned_kernel(&String::from_utf8_lossy(&depends.stdout)).ok_or(format!(
            "`apt-cache depends linux-image-{ARCH}:{ARCH}` names no linux-image-*-{ARCH} package"
        ))?;
    println!("==> {kernel_package}, busybox-static");
    std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    crate::run(
        Command::new("apt-get")
            .args([
                "download",
                &format!("{kernel_package}:{ARCH}"),
                &format!("busybox-static:{ARCH}"),
            ])
            .current_dir(&debs),
    )?;
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in std::fs::read_dir(&debs).map_err(|e| format!("{}: {e}", debs.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted =
            name.starts_with(&format!("{kernel_package}_")) || name.starts_with("busybox-static_");
        if wanted && name.ends_with(".deb") {
            crate::run(Command::new("dpkg").arg("-x").arg(&path).arg(root))?;
        }
    }
    find_files(root).map(|_| ())
}

/// The versioned kernel package in `apt-cache depends` output, e.g.
/// `linux-image-6.1.0-57-arm64`.
fn versioned_kernel(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        let name = name.split(':').next()?.trim();
        let version = name
            .strip_prefix("linux-image-")?
            .strip_suffix(&format!("-{ARCH}"))?;
        version
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| name.to_owned())
    })
}

/// The guest's `/init`: prints the timer facts, runs the project's timer
/// check program (`examples/linux-timer-check`), then powers off through
/// PSCI. Every line it prints starts with `ATV-INIT:` so the run's report
/// can find them among the kernel's messages.
const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "ATV-INIT: user space up at $(cut -d' ' -f1 /proc/uptime) s"
echo "ATV-INIT: clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
timer_irqs() { grep arch_timer /proc/interrupts | tr -s ' ' | cut -d' ' -f3; }
before=$(timer_irqs)
t0=$(cut -d' ' -f1 /proc/uptime)
sleep 1
t1=$(cut -d' ' -f1 /proc/uptime)
after=$(timer_irqs)
echo "ATV-INIT: sleep 1 took $t0 -> $t1 s of /proc/uptime"
echo "ATV-INIT: arch_timer interrupts $before -> $after"
i0=$(timer_irqs)
u0=$(cut -d' ' -f1 /proc/uptime)
sleep 5
u1=$(cut -d' ' -f1 /proc/uptime)
i1=$(timer_irqs)
echo "ATV-INIT: idle sleep 5 took $u0 -> $u1 s, arch_timer interrupts $i0 -> $i1"
grep -E 'arch_timer|IPI|uart-pl011' /proc/interrupts | tr -s ' ' | sed 's/^/ATV-INIT: /'
# Kernel messages to the console only for emergencies while the check runs:
# none may split its summary line.
printk=$(cut -f1 /proc/sys/kernel/printk)
echo 1 > /proc/sys/kernel/printk
/bin/linux-timer-check
status=$?
echo "$printk" > /proc/sys/kernel/printk
echo "ATV-INIT: timer check exit status $status"
echo "ATV-INIT: done"
poweroff -f
"#;

/// The initramfs: busybox as `/bin/busybox`, the timer check program as
/// `/bin/linux-timer-check`, `/init`, and the directories they need.
fn initramfs(busybox: &[u8], check: &[u8]) -> Result<Vec<u8>> {
    let mut cpio = Cpio::new();
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.directory(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init's standard streams before any
    // devtmpfs exists.
    cpio.char_device("dev/console", 0o600, (5, 1))?;
    cpio.file("bin/busybox", 0o755, busybox)?;
    cpio.symlink("bin/sh", "busybox")?;
    cpio.file("bin/linux-timer-check", 0o755, check)?;
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    Ok(cpio.finish())
}

/// A `newc` ("070701") cpio archive, the format Linux unpacks as an
/// initramfs: per entry a 110-byte ASCII header (magic and 13 eight-digit
/// hex fields), the NUL-terminated name padded to 4 bytes, the data padded
/// to 4 bytes; a `TRAILER!!!` entry ends it.
struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

impl Cpio {
    fn new() -> Self {
        Self {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    fn directory(&mut self, name: &str, perm: u32) -> Result {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[])
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> Result {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    fn char_device(&mut self, name: &str, perm: u32, dev: (u32, u32)) -> Result {
        self.entry(name, S_IFCHR | perm, 1, dev, &[])
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result {
        if name.is_empty() || name.contains('\0') {
            return Err(format!("cpio: bad name {name:?}"));
        }
        let size =
            u32::try_from(data.len()).map_err(|_| format!("cpio: {name} is larger than 4 GiB"))?;
        let namesize =
            u32::try_from(name.len() + 1).map_err(|_| format!("cpio: name {name} too long"))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        let mut header = String::from("070701");
        for f in fields {
            let _ = write!(header, "{f:08x}");
        }
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Ends the archive with its trailer.
    fn finish(mut self) -> Vec<u8> {
        // The trailer's header has every field 0 but nlink 1 and namesize.
        let _ = self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }
}

/// One Linux run's settings.
struct LinuxRun {
    config: Config,
    timeout: Duration,
}

impl LinuxRun {
    fn config_word(&self) -> u32 {
        u32::from_le_bytes([
            LINUX_SCENARIO,
            u8::from(self.config.vhe),
            self.config.gic,
            0,
        ]) | (CONFIG_MAGIC << 24)
    }
}

/// What a Linux run showed.
struct LinuxReport {
    passed: bool,
    timed_out: bool,
    seconds: f64,
    /// What the guest's checks found, or the first that failed.
    checks: std::result::Result<String, String>,
    lines: Vec<String>,
}

/// The figures of the hypervisor's `RESULT` line a Linux run's line
/// carries: the counter frequency, the vtimer interrupts the guest took
/// (`delivered`, counted by the hypervisor at its exits) and the library
/// raised, the exits and exits per delivered vtimer interrupt (all exits,
/// most of them the console's emulated UART accesses), the exits the vtimer's
/// host interrupt caused per delivered interrupt, the host
/// interrupts that exited the guest by cause (27 the vtimer, 26 the
/// hypervisor's own timer, 25 maintenance), spurious host vtimer
/// interrupts, maintenance interrupts, wake-ups of a vCPU asleep in WFI
/// by the background soft timer and by its timer's PPI (blocked in place),
/// WFI exits, lost interrupts, and the library's timer
/// calls that entered a critical section (a lock shared across CPUs; 0).
const HV_FIELDS: [&str; 16] = [
    "cntfrq_hz",
    "delivered",
    "raised",
    "exits",
    "exits_per_delivered",
    "vtimer_exits_per_irq",
    "irq_exits_27",
    "irq_exits_26",
    "irq_exits_25",
    "spurious",
    "maintenance",
    "bg_wakeups",
    "ppi_wakeups",
    "wfi_exits",
    "lost",
    "timer_path_locks",
];

impl LinuxReport {
    /// The last kernel messages, the `/init` lines and the hypervisor's
    /// verdict.
    fn summary(&self) -> String {
        let mut s = String::new();
        let kernel: Vec<&String> = self
            .lines
            .iter()
            .filter(|l| l.starts_with('[') || l.starts_with("ATV-INIT"))
            .collect();
        let _ = writeln!(
            s,
            "{} console lines, {} of them kernel or /init messages, in {:.1} s{}",
            self.lines.len(),
            kernel.len(),
            self.seconds,
            if self.timed_out { " (timed out)" } else { "" }
        );
        let _ = match &self.checks {
            Ok(found) => writeln!(s, "guest checks: pass: {found}"),
            Err(why) => writeln!(s, "guest checks: FAIL: {why}"),
        };
        let _ = writeln!(s, "last kernel messages:");
        for l in kernel.iter().skip(kernel.len().saturating_sub(12)) {
            let _ = writeln!(s, "  {l}");
        }
        let hv: Vec<&String> = self
            .lines
            .iter()
            .filter(|l| l.starts_with("hv:") || l.starts_with("RESULT"))
            .collect();
        for l in hv.iter().skip(hv.len().saturating_sub(4)) {
            let _ = writeln!(s, "  {l}");
        }
        s
    }

    /// The hypervisor's `RESULT` line, if it printed one.
    fn hv_result(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.starts_with("RESULT "))
            .map(String::as_str)
    }

    /// The timer check program's summary, if it printed one.
    fn guest_summary(&self) -> Option<Summary> {
        self.lines.iter().find_map(|l| Summary::parse(l))
    }

    /// One line for the run: the configuration, the hypervisor's figures
    /// ([`HV_FIELDS`]), when user
    /// space came up, the idle sleep's timer interrupts, the guest's timer
    /// check figures, and the verdict.
    fn result_line(&self, run: &LinuxRun) -> String {
        let hv = self.hv_result().unwrap_or("");
        let field = |key: &str| {
            hv.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        let mut s = format!(
            "LINUX {} hv_vcpus={} run_s={:.1}",
            run.config.describe(),
            field("vcpus").unwrap_or("?"),
            self.seconds
        );
        if let Some(up) = after(&self.lines, "ATV-INIT: user space up at ")
            && let Some(t) = up.split_whitespace().next()
        {
            let _ = write!(s, " user_space_s={t}");
        }
        for key in HV_FIELDS {
            let _ = write!(s, " {key}={}", field(key).unwrap_or("?"));
        }
        if let Some([_, _, i0, i1]) = idle_sleep(&self.lines) {
            let _ = write!(s, " idle5s_timer_irqs={}", i1 - i0);
        }
        if let Some(n) = uart_interrupts(&self.lines) {
            let _ = write!(s, " uart_irqs={n}");
        }
        match self.guest_summary() {
            Some(g) => {
                let _ = write!(
                    s,
                    " sleeps={} early={} late_median_us={} late_max_us={} tfd_expirations={} \
                     tfd_expected={}..{} tfd_overruns={} cpus={} mono_reads={} mono_back={}",
                    g.sleeps,
                    g.early,
                    g.late_median_us,
                    g.late_max_us,
                    g.tfd_expirations,
                    g.tfd_expected_min,
                    g.tfd_expected_max,
                    g.tfd_overruns,
                    g.cpus,
                    g.mono_reads,
                    g.mono_back
                );
            }
            None => s.push_str(" guest_check=missing"),
        }
        s.push_str(if self.passed { " PASS" } else { " FAIL" });
        s
    }

    /// Why a failed run failed, and the console's last lines.
    fn failure(&self) -> String {
        let why = match &self.checks {
            Err(why) => why.clone(),
            Ok(_) if self.timed_out => "timed out".to_owned(),
            Ok(_) => "the hypervisor's verdict or QEMU's exit status".to_owned(),
        };
        let tail: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        format!(
            "  failed: {why}\n{}",
            crate::qemu::tail(&tail.join("\n"), 15)
        )
    }
}

/// Boots the kernel under the hypervisor `image` on `qemu`, echoing the
/// console when `echo` is set.
fn boot(
    qemu: &Qemu,
    image: &Path,
    guest: &Guest,
    run: &LinuxRun,
    echo: bool,
) -> Result<LinuxReport> {
    if guest.initrd_len > INITRD_MAX {
        return Err(format!(
            "the initramfs is {} bytes, more than the {INITRD_MAX} the guest layout has room for",
            guest.initrd_len
        ));
    }
    let initrd_len = u32::try_from(guest.initrd_len).map_err(|e| e.to_string())?;
    let mut cmd = qemu.machine_command();
    cmd.args([
        "-machine",
        &crate::qemu::machine_option(run.config.gic, false),
        // SVE and SME off: the example's world switch saves the FP/SIMD
        // registers, not the wider SVE state (and a VHE host traps SVE).
        "-cpu",
        "max,sve=off,sme=off",
        "-smp",
        &run.config.host_cpus.to_string(),
        "-m",
        QEMU_RAM,
        "-nographic",
        "-semihosting",
        "-device",
        &format!(
            "loader,addr={CONFIG_ADDR:#x},data={:#x},data-len=4",
            run.config_word()
        ),
        "-device",
        &format!("loader,addr={BOOT_INFO_ADDR:#x},data={BOOT_INFO_MAGIC:#x},data-len=4"),
        "-device",
        &format!(
            "loader,addr={:#x},data={initrd_len:#x},data-len=4",
            BOOT_INFO_ADDR + 4
        ),
        "-device",
        &format!(
            "loader,addr={:#x},data={:#x},data-len=4",
            BOOT_INFO_ADDR + 8,
            run.config.smp_word()
        ),
        "-device",
        &format!(
            "loader,file={},addr={KERNEL_ADDR:#x},force-raw=on",
            guest.kernel.display()
        ),
        "-device",
        &format!(
            "loader,file={},addr={INITRD_ADDR:#x},force-raw=on",
            guest.initrd.display()
        ),
    ]);
    cmd.arg("-kernel").arg(image);
    if echo {
        println!("$ {cmd:?}");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.program().display()))?;
    // Console input ([`CONSOLE_INPUT`]): the hypervisor hands it to the
    // guest's emulated PL011 once its driver listens, whose receive
    // interrupts then show in /proc/interrupts (`uart-pl011`). The reader
    // of QEMU's output types it again when user space is up and keeps the
    // pipe open until QEMU ends (QEMU sees no end of its input).
    let mut input = child.stdin.take().ok_or("no QEMU stdin")?;
    input
        .write_all(CONSOLE_INPUT)
        .map_err(|e| format!("cannot write QEMU's input: {e}"))?;
    let stdout = child.stdout.take().ok_or("no QEMU stdout")?;
    let stderr = child.stderr.take().ok_or("no QEMU stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || echo_lines(stdout, &tx, echo, Some(input))),
        std::thread::spawn(move || echo_lines(stderr, &tx2, echo, None)),
    ];
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > run.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        let _ = r.join();
    }
    let lines: Vec<String> = rx.try_iter().collect();
    let verdict_pass = lines
        .iter()
        .any(|l| l.starts_with("RESULT scenario=linux") && l.ends_with(" PASS"));
    let checks = guest_checks(&lines, guest.tick_hz);
    Ok(LinuxReport {
        passed: status.is_some_and(|s| s.success()) && verdict_pass && checks.is_ok(),
        timed_out: status.is_none(),
        seconds: start.elapsed().as_secs_f64(),
        checks,
        lines,
    })
}

/// Boots every configuration of [`CONFIGS`] on `qemu`, one after the
/// other, printing one line per run ([`LinuxReport::result_line`]) and,
/// for a failed run, why and the console's last lines. An error only when
/// a run cannot be started.
pub(crate) fn matrix(qemu: &Qemu, image: &Path, guest: &Guest) -> Result<MatrixReport> {
    let start = Instant::now();
    let mut report = MatrixReport {
        qemu: format!("{} Linux guest", qemu.label()),
        cntfrq: Vec::new(),
        runs: CONFIGS.len(),
        failed: Vec::new(),
        elapsed: Duration::ZERO,
    };
    println!(
        "==> Linux guest on {}: {} runs",
        qemu.label(),
        CONFIGS.len()
    );
    for (i, config) in CONFIGS.iter().enumerate() {
        let run = LinuxRun {
            config: *config,
            timeout: Duration::from_secs(MATRIX_TIMEOUT),
        };
        let r = boot(qemu, image, guest, &run, false)?;
        let line = r.result_line(&run);
        let hz = crate::qemu::result_cntfrq(&line);
        if let Some(hz) = hz
            && !report.cntfrq.contains(&hz)
        {
            report.cntfrq.push(hz);
        }
        println!(
            "{:6} [{}/{}] {} {} {line}",
            if r.passed { "ok" } else { "FAILED" },
            i + 1,
            CONFIGS.len(),
            qemu.label(),
            crate::qemu::describe_cntfrq(hz)
        );
        if !r.passed {
            println!("{}", r.failure());
            report.failed.push(format!("linux {}", config.describe()));
        }
    }
    report.elapsed = start.elapsed();
    println!("qemu: {}", report.summary());
    Ok(report)
}

/// What follows `prefix` on the first console line holding it, trimmed.
fn after(lines: &[String], prefix: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        l.find(prefix)
            .map(|at| l[at + prefix.len()..].trim().to_owned())
    })
}

/// The idle `sleep 5` of `/init`: uptime before and after, `arch_timer`
/// interrupts before and after.
fn idle_sleep(lines: &[String]) -> Option<[f64; 4]> {
    let idle = after(lines, "ATV-INIT: idle sleep 5 took ")?;
    let numbers: Vec<f64> = idle
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers.try_into().ok()
}

/// The guest's timer checks, from the console: the kernel runs the
/// virtual timer at the counter frequency the hypervisor read (its boot
/// log), the clocksource is the architected counter, `sleep 1` did not
/// return early by `/proc/uptime`, the `arch_timer` interrupt count grew
/// over it, an idle `sleep 5` took at most half the interrupts of the
/// kernel's periodic tick (`tick_hz`, when known: tickless idle), and
/// `/init` got to its end.
fn guest_checks(lines: &[String], tick_hz: Option<u64>) -> std::result::Result<String, String> {
    let after = |prefix: &str| {
        lines.iter().find_map(|l| {
            l.find(prefix)
                .map(|at| l[at + prefix.len()..].trim().to_owned())
        })
    };
    let hz: u64 = after("hv: linux: ")
        .and_then(|l| {
            let at = l.find("counter ")?;
            l[at + "counter ".len()..].split(' ').next()?.parse().ok()
        })
        .ok_or("the hypervisor did not say the counter frequency")?;
    let kernel_mhz = after("cp15 timer(s) running at ").ok_or(
        "no `arch_timer: cp15 timer(s) running at` line: the kernel did not take the timer",
    )?;
    if !kernel_mhz.ends_with("MHz (virt).") {
        return Err(format!(
            "the kernel does not use the virtual timer: {kernel_mhz}"
        ));
    }
    // The kernel prints MHz with two decimals, truncated.
    let expected = format!("{}.{:02}MHz", hz / 1_000_000, hz % 1_000_000 / 10_000);
    if !kernel_mhz.starts_with(&expected) {
        return Err(format!(
            "the kernel's timer runs at {kernel_mhz}, the counter at {hz} Hz"
        ));
    }
    let clocksource =
        after("ATV-INIT: clocksource ").ok_or("/init did not report the clocksource")?;
    if clocksource != "arch_sys_counter" {
        return Err(format!(
            "the clocksource is {clocksource}, not arch_sys_counter"
        ));
    }
    let slept = after("ATV-INIT: sleep 1 took ").ok_or("/init did not time its sleep")?;
    let times: Vec<f64> = slept
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [t0, t1] = times[..] else {
        return Err(format!("cannot read the sleep times in `{slept}`"));
    };
    if t1 - t0 < 1.0 {
        return Err(format!(
            "sleep 1 returned after {:.2} s of /proc/uptime",
            t1 - t0
        ));
    }
    let irqs = after("ATV-INIT: arch_timer interrupts ").ok_or("/init did not count arch_timer")?;
    let counts: Vec<u64> = irqs
        .split(" -> ")
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let [before, after_sleep] = counts[..] else {
        return Err(format!("cannot read the interrupt counts in `{irqs}`"));
    };
    if after_sleep <= before {
        return Err(format!(
            "arch_timer interrupts did not grow over sleep 1: {irqs}"
        ));
    }
    let idle = after("ATV-INIT: idle sleep 5 took ").ok_or("/init did not time its idle sleep")?;
    let numbers: Vec<f64> = idle
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|w| w.parse().ok())
        .collect();
    let [u0, u1, i0, i1] = numbers[..] else {
        return Err(format!("cannot read the idle sleep in `{idle}`"));
    };
    if u1 - u0 < 5.0 {
        return Err(format!(
            "sleep 5 returned after {:.2} s of /proc/uptime",
            u1 - u0
        ));
    }
    let idle_irqs = i1 - i0;
    let tickless = match tick_hz {
        // Tickless idle: far fewer timer interrupts than a periodic tick
        // would take (half of them is the bound).
        Some(hz) => {
            let periodic = (u1 - u0) * hz as f64;
            if idle_irqs > periodic / 2.0 {
                return Err(format!(
                    "{idle_irqs} timer interrupts in an idle sleep 5: not tickless (a {hz} Hz tick \
                     takes {periodic:.0})"
                ));
            }
            format!("{idle_irqs} timer interrupts in 5 s idle (a {hz} Hz tick: {periodic:.0})")
        }
        None => format!("{idle_irqs} timer interrupts in 5 s idle (CONFIG_HZ unknown)"),
    };
    let uart = uart_interrupts(lines).ok_or("/init did not list the uart-pl011 interrupt")?;
    if uart == 0 {
        return Err(
            "the guest's UART interrupt (uart-pl011) never came: the console input the xtask \
             types did not reach it"
                .into(),
        );
    }
    let g = lines
        .iter()
        .find_map(|l| Summary::parse(l))
        .ok_or("the timer check program printed no summary (`ATV-CHECK:` line)")?;
    g.check().map_err(|e| format!("timer check: {e}"))?;
    if !lines.iter().any(|l| l.contains(INIT_DONE)) {
        return Err("/init did not finish".into());
    }
    Ok(format!(
        "timer at {expected} (virt), clocksource {clocksource}, sleep 1 took {:.2} s, \
         arch_timer interrupts {before} -> {after_sleep}; {tickless}; {uart} uart-pl011 \
         interrupts; {} clock_nanosleep \
         calls, none early, late by {} us median, {} us at most; timerfd: {} expirations \
         ({}..={} for the time that passed) in {} reads, {} overruns; CLOCK_MONOTONIC: {} \
         readings on {} CPU(s), none back",
        t1 - t0,
        g.sleeps,
        g.late_median_us,
        g.late_max_us,
        g.tfd_expirations,
        g.tfd_expected_min,
        g.tfd_expected_max,
        g.tfd_reads,
        g.tfd_overruns,
        g.mono_reads,
        g.cpus
    ))
}

/// The kernel's `CONFIG_HZ` from the `config-<version>` file Debian ships
/// beside `vmlinuz-<version>`.
fn kernel_tick_hz(kernel: &Path) -> Option<u64> {
    let name = kernel.file_name()?.to_str()?;
    let config = kernel.with_file_name(name.replacen("vmlinuz-", "config-", 1));
    let text = std::fs::read_to_string(config).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends each line of `pipe` to `tx`, printing it as it comes when `echo`
/// is set.
/// With `input` (QEMU's standard input), types [`CONSOLE_INPUT`] when
/// the line [`USER_SPACE_UP`] comes, and keeps `input` open until `pipe`
/// ends.
fn echo_lines(
    pipe: impl Read,
    tx: &std::sync::mpsc::Sender<String>,
    echo: bool,
    mut input: Option<std::process::ChildStdin>,
) {
    let reader = BufReader::new(pipe);
    let mut typed = false;
    for line in reader.split(b'\n') {
        let Ok(bytes) = line else { break };
        let text = String::from_utf8_lossy(&bytes)
            .trim_end_matches('\r')
            .to_owned();
        if echo {
            println!("{text}");
        }
        if !typed
            && text.contains(USER_SPACE_UP)
            && let Some(i) = input.as_mut()
        {
            // A failed write shows as a missing interrupt in the checks.
            let _ = i.write_all(CONSOLE_INPUT).and_then(|()| i.flush());
            typed = true;
        }
        let _ = tx.send(text);
    }
    drop(input);
}

/// The guest's UART interrupts, all CPUs together, from `/init`'s
/// `/proc/interrupts` excerpt (`ATV-INIT:  13: 2 0 GICv3 33 Level
/// uart-pl011`).
fn uart_interrupts(lines: &[String]) -> Option<u64> {
    let line = lines
        .iter()
        .find(|l| l.starts_with("ATV-INIT:") && l.ends_with(" uart-pl011"))?;
    let mut words = line.split_whitespace().skip(2);
    let mut total = None;
    for w in words.by_ref() {
        let Ok(n) = w.parse::<u64>() else { break };
        total = Some(total.unwrap_or(0) + n);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back from a `newc` archive.
    #[derive(Debug, PartialEq, Eq)]
    struct Entry {
        name: String,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    /// A reader written from the format's description, independent of the
    /// writer: checks the magic, the alignment of every name and body, and
    /// that the trailer ends the archive.
    fn read_newc(archive: &[u8]) -> std::result::Result<Vec<Entry>, String> {
        let mut at = 0;
        let mut entries = Vec::new();
        loop {
            if at % 4 != 0 {
                return Err(format!("header at {at} not 4-byte aligned"));
            }
            let header = archive.get(at..at + 110).ok_or("truncated header")?;
            if &header[..6] != b"070701" {
                return Err(format!("bad magic at {at}"));
            }
            let field = |n: usize| -> std::result::Result<u32, String> {
                let text = std::str::from_utf8(&header[6 + 8 * n..14 + 8 * n])
                    .map_err(|e| e.to_string())?;
                u32::from_str_radix(text, 16).map_err(|e| e.to_string())
            };
            let mode = field(1)?;
            let nlink = field(4)?;
            let size = field(6)? as usize;
            let rdev = (field(9)?, field(10)?);
            let namesize = field(11)? as usize;
            if field(12)? != 0 {
                return Err("check field not 0".into());
            }
            let name_start = at + 110;
            let name = archive
                .get(name_start..name_start + namesize)
                .ok_or("truncated name")?;
            let (last, name) = name.split_last().ok_or("empty name")?;
            if *last != 0 {
                return Err("name not NUL-terminated".into());
            }
            let name = String::from_utf8(name.to_vec()).map_err(|e| e.to_string())?;
            let data_start = (name_start + namesize).next_multiple_of(4);
            let data = archive
                .get(data_start..data_start + size)
                .ok_or("truncated data")?
                .to_vec();
            at = (data_start + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                if at != archive.len() {
                    return Err("bytes after the trailer".into());
                }
                return Ok(entries);
            }
            entries.push(Entry {
                name,
                mode,
                nlink,
                rdev,
                data,
            });
        }
    }

    #[test]
    fn a_header_is_110_ascii_bytes_with_hex_fields() {
        let mut cpio = Cpio::new();
        cpio.file("a", 0o644, b"xyz")
            .unwrap_or_else(|e| panic!("{e}"));
        let out = cpio.finish();
        let header = std::str::from_utf8(&out[..110]).unwrap_or_else(|e| panic!("{e}"));
        let fields = [1, 0o100_644, 0, 0, 1, 0, 3, 0, 0, 0, 0, 2, 0];
        let expected: String = std::iter::once("070701".to_owned())
            .chain(fields.iter().map(|f: &u32| format!("{f:08x}")))
            .collect();
        assert_eq!(header, expected);
        // Name "a\0" at 110..112, data at 112 (already aligned), 3 bytes
        // padded to 116; then the trailer.
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..116], b"xyz\0");
        assert_eq!(&out[116..122], b"070701");
        assert_eq!(out.len() % 4, 0);
    }

    #[test]
    fn entries_read_back_with_types_and_padding() {
        let mut cpio = Cpio::new();
        let r = (|| -> Result {
            cpio.directory("bin", 0o755)?;
            cpio.file("bin/busybox", 0o755, b"\x7fELF12345")?;
            cpio.symlink("bin/sh", "busybox")?;
            cpio.char_device("dev/console", 0o600, (5, 1))?;
            cpio.file("empty", 0o644, b"")?;
            Ok(())
        })();
        r.unwrap_or_else(|e| panic!("{e}"));
        let entries = read_newc(&cpio.finish()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev/console", "empty"]
        );
        assert_eq!(entries[0].mode, S_IFDIR | 0o755);
        assert_eq!(entries[0].nlink, 2);
        assert_eq!(entries[1].mode, S_IFREG | 0o755);
        assert_eq!(entries[1].data, b"\x7fELF12345");
        assert_eq!(entries[2].mode, S_IFLNK | 0o777);
        assert_eq!(entries[2].data, b"busybox");
        assert_eq!(entries[3].mode, S_IFCHR | 0o600);
        assert_eq!(entries[3].rdev, (5, 1));
        assert!(entries[4].data.is_empty());
    }

    #[test]
    fn bad_names_are_refused() {
        let mut cpio = Cpio::new();
        assert!(cpio.file("", 0o644, b"").is_err());
        assert!(cpio.file("a\0b", 0o644, b"").is_err());
    }

    #[test]
    fn the_initramfs_has_an_executable_init_and_busybox() {
        let archive =
            initramfs(b"\x7fELFbusybox", b"\x7fELFcheck").unwrap_or_else(|e| panic!("{e}"));
        let entries = read_newc(&archive).unwrap_or_else(|e| panic!("{e}"));
        let init = entries
            .iter()
            .find(|e| e.name == "init")
            .unwrap_or_else(|| panic!("no /init"));
        assert_eq!(init.mode & 0o170_000, S_IFREG);
        assert_ne!(init.mode & 0o111, 0, "/init must be executable");
        assert!(init.data.starts_with(b"#!/bin/busybox sh\n"));
        let text = String::from_utf8_lossy(&init.data);
        assert!(text.contains("poweroff -f"));
        assert!(text.contains(INIT_DONE));
        assert!(text.contains("current_clocksource"));
        assert!(entries.iter().any(|e| e.name == "bin/busybox"));
        let check = entries
            .iter()
            .find(|e| e.name == "bin/linux-timer-check")
            .unwrap_or_else(|| panic!("no timer check program"));
        assert_eq!(check.data, b"\x7fELFcheck");
        assert_ne!(check.mode & 0o111, 0, "the check must be executable");
        assert!(text.contains("\n/bin/linux-timer-check\n"));
        assert!(text.contains("echo 1 > /proc/sys/kernel/printk\n"));
        assert!(entries.iter().any(|e| e.name == "dev/console"));
    }

    #[test]
    fn the_versioned_kernel_package_is_found() {
        let out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-57-arm64:arm64\n";
        assert_eq!(
            versioned_kernel(out).as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        let out = "linux-image-arm64\n  Depends: linux-image-6.12.38+deb12-arm64\n";
        assert_eq!(
            versioned_kernel(out).as_deref(),
            Some("linux-image-6.12.38+deb12-arm64")
        );
        assert_eq!(versioned_kernel("  Depends: linux-base\n"), None);
        assert_eq!(
            versioned_kernel("  Recommends: linux-image-6.1.0-57-arm64\n"),
            None
        );
    }

    #[test]
    fn packaged_md5_sums_are_found_by_path() {
        let sums = "0123456789abcdef0123456789abcdef  boot/vmlinuz-6.1.0-57-arm64\n\
                    fedcba9876543210fedcba9876543210  bin/busybox\n\
                    short  bin/other\n";
        assert_eq!(
            packaged_md5(sums, "bin/busybox"),
            ["fedcba9876543210fedcba9876543210"]
        );
        assert_eq!(
            packaged_md5(sums, "boot/vmlinuz-6.1.0-57-arm64"),
            ["0123456789abcdef0123456789abcdef"]
        );
        assert!(packaged_md5(sums, "bin/other").is_empty());
        assert!(packaged_md5(sums, "bin/busy").is_empty());
        let two = format!("{sums}00112233445566778899aabbccddeeff  bin/busybox\n");
        assert_eq!(
            packaged_md5(&two, "bin/busybox"),
            [
                "fedcba9876543210fedcba9876543210",
                "00112233445566778899aabbccddeeff"
            ]
        );
    }

    #[test]
    fn image_headers_are_checked() {
        let mut head = [0_u8; 64];
        head[56..60].copy_from_slice(b"ARM\x64");
        head[16..24].copy_from_slice(&0x0201_0000_u64.to_le_bytes());
        head[24] = 0b1010;
        let h = ImageHeader::parse(&head).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.image_size, 0x0201_0000);
        assert_eq!(h.text_offset, 0);
        assert!(h.describe().contains("4K pages"));
        let mut big = head;
        big[24] = 1;
        assert!(ImageHeader::parse(&big).is_err());
        let mut old = head;
        old[16..24].fill(0);
        assert!(ImageHeader::parse(&old).is_err());
        let mut zboot = head;
        zboot[56..60].copy_from_slice(b"zimg");
        assert!(ImageHeader::parse(&zboot).is_err());
    }

    fn console(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    /// Counter frequencies under test, with the kernel's way of printing
    /// them (QEMU 7.2's counter and an Armv8.6 1 GHz one).
    const FREQUENCIES_UNDER_TEST: [(u64, &str); 2] =
        [(62_500_000, "62.50MHz"), (1_000_000_000, "1000.00MHz")];

    /// A passing run's console for a counter at `hz`, printed by the
    /// kernel as `mhz`.
    fn good(hz: u64, mhz: &str) -> String {
        format!(
            "\
hv: linux: Image at 0x48000000 (image_size 0x2010000), initramfs 0x50000000..0x501c344c, device tree 1517 bytes at 0x4fe00000, counter {hz} Hz
[    0.000000] arch_timer: cp15 timer(s) running at {mhz} (virt).
ATV-INIT: clocksource arch_sys_counter
ATV-INIT: sleep 1 took 8.80 -> 9.87 s of /proc/uptime
ATV-INIT: arch_timer interrupts 2168 -> 2249
ATV-INIT: idle sleep 5 took 8.31 -> 13.37 s, arch_timer interrupts 1820 -> 1906
ATV-INIT:  11: 2249 GICv3 27 Level arch_timer
ATV-INIT:  13: 2 GICv3 33 Level uart-pl011
{CHECK_LINE}
ATV-INIT: timer check exit status 0
ATV-INIT: done
RESULT scenario=linux gic=v3 mode=nvhe vcpus=1 delivered=2540 raised=2546 exits=3853 exits_per_irq=1.51 vtimer_exits_per_irq=1.00 irq_exits_27=2546 irq_exits_26=19 irq_exits_25=0 spurious_host=0 lost=0 wfi_exits=1187 exits_per_delivered=1.51 spurious=0 maintenance=0 bg_wakeups=905 ppi_wakeups=40 timer_path_locks=0 cntfrq_hz={hz} PASS
"
        )
    }

    /// The timer check program's summary from a QEMU 7.2 run.
    const CHECK_LINE: &str = "ATV-CHECK: sleeps=200 sleep_errors=0 early=0 late_median_us=817 \
        late_max_us=197503 tfd_ms=2070 tfd_reads=904 tfd_expirations=2070 tfd_overruns=1166 \
        tfd_expected_min=1994 tfd_expected_max=2070 tfd_errors=0 cpus=1 mono_reads=10000 \
        mono_back=0 migrations=0 wrong_cpu=0 verdict=pass";

    #[test]
    fn a_run_has_one_line_with_the_hypervisor_and_guest_figures() {
        let [(hz, mhz), _] = FREQUENCIES_UNDER_TEST;
        let lines = console(&format!(
            "[    8.18] Run /init\nATV-INIT: user space up at 8.18 s\n{}",
            good(hz, mhz)
        ));
        let checks = guest_checks(&lines, TICK_HZ);
        let report = LinuxReport {
            passed: checks.is_ok(),
            timed_out: false,
            seconds: 24.6,
            checks,
            lines,
        };
        let run = LinuxRun {
            config: Config::DEFAULT,
            timeout: Duration::ZERO,
        };
        let line = report.result_line(&run);
        assert_eq!(
            line,
            format!(
                "LINUX gic=v3 mode=nvhe vcpus=1 host_cpus=1 hv_vcpus=1 run_s=24.6 user_space_s=8.18 cntfrq_hz={hz} \
                 delivered=2540 raised=2546 exits=3853 exits_per_delivered=1.51 \
                 vtimer_exits_per_irq=1.00 irq_exits_27=2546 \
                 irq_exits_26=19 irq_exits_25=0 spurious=0 maintenance=0 bg_wakeups=905 \
                 ppi_wakeups=40 wfi_exits=1187 lost=0 timer_path_locks=0 \
                 idle5s_timer_irqs=86 uart_irqs=2 sleeps=200 early=0 late_median_us=817 \
                 late_max_us=197503 tfd_expirations=2070 tfd_expected=1994..2070 \
                 tfd_overruns=1166 cpus=1 mono_reads=10000 mono_back=0 PASS"
            )
        );
        assert_eq!(crate::qemu::result_cntfrq(&line), Some(hz));
        let failed = LinuxReport {
            passed: false,
            timed_out: true,
            seconds: 150.0,
            checks: Err("/init did not finish".into()),
            lines: console("[    0.0] Booting Linux\n"),
        };
        let line = failed.result_line(&run);
        assert!(line.contains(" raised=? "), "{line}");
        assert!(line.contains(" delivered=? "), "{line}");
        assert!(line.contains(" exits_per_delivered=? "), "{line}");
        assert!(line.ends_with(" guest_check=missing FAIL"), "{line}");
        assert!(failed.failure().contains("/init did not finish"));
    }

    /// The tick rate of the kernel under test (Debian's `CONFIG_HZ`).
    const TICK_HZ: Option<u64> = Some(250);

    #[test]
    fn the_guest_checks_read_the_console() {
        for (hz, mhz) in FREQUENCIES_UNDER_TEST {
            let text = good(hz, mhz);
            let found = guest_checks(&console(&text), TICK_HZ).unwrap_or_else(|e| panic!("{e}"));
            assert!(found.contains(mhz), "{found}");
            assert!(found.contains("86 timer interrupts in 5 s idle"), "{found}");
            assert!(guest_checks(&console(&text), None).is_ok());
            let counter = format!("counter {hz} Hz");
            let bad = [
                text.replace(mhz, "12.34MHz"),
                text.replace("(virt)", "(phys)"),
                text.replace("arch_sys_counter", "jiffies"),
                text.replace("9.87", "9.70"),
                text.replace("-> 2249", "-> 2168"),
                text.replace("ATV-INIT: done\n", ""),
                text.replace(&counter, ""),
                text.replace("-> 1906", "-> 2600"),
                text.replace("-> 13.37", "-> 13.00"),
                text.replace("ATV-INIT: idle", "ATV-INIT: busy"),
                text.replace(CHECK_LINE, ""),
                text.replace(" early=0 ", " early=1 "),
                text.replace(" mono_back=0 ", " mono_back=3 "),
                text.replace(" tfd_expirations=2070 ", " tfd_expirations=1500 "),
                text.replace("13: 2 GICv3", "13: 0 GICv3"),
                text.replace(" uart-pl011", " uart-pl011-gone"),
            ];
            for text in bad {
                assert!(guest_checks(&console(&text), TICK_HZ).is_err(), "{text}");
            }
        }
        // The kernel's frequency must be the counter's.
        let [(hz, _), (_, other)] = FREQUENCIES_UNDER_TEST;
        assert!(guest_checks(&console(&good(hz, other)), TICK_HZ).is_err());
    }

    #[test]
    fn uart_interrupts_add_up_every_cpu() {
        let lines = console("ATV-INIT:  13: 1 0 GICv3 33 Level uart-pl011\n");
        assert_eq!(uart_interrupts(&lines), Some(1));
        let lines = console("ATV-INIT:  13: 3 4 GIC-0 33 Level uart-pl011\n");
        assert_eq!(uart_interrupts(&lines), Some(7));
        let lines = console("ATV-INIT:  11: 5 GICv3 27 Level arch_timer\n");
        assert_eq!(uart_interrupts(&lines), None);
        let lines = console("[ 1.0] uart-pl011 9000000.pl011: no DMA platform data\n");
        assert_eq!(uart_interrupts(&lines), None);
    }

    #[test]
    fn the_tick_rate_comes_from_the_kernel_config() {
        let dir = std::env::temp_dir().join(format!("atv-linux-hz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let kernel = dir.join("vmlinuz-6.1.0-57-arm64");
        assert_eq!(kernel_tick_hz(&kernel), None);
        std::fs::write(
            dir.join("config-6.1.0-57-arm64"),
            "CONFIG_HZ_250=y\nCONFIG_HZ=250\nCONFIG_SCHED_HRTICK=y\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kernel_tick_hz(&kernel), Some(250));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_configuration_word_selects_the_linux_scenario() {
        let config = Config {
            gic: 2,
            vhe: true,
            vcpus: 2,
            host_cpus: 1,
        };
        let run = LinuxRun {
            config,
            timeout: Duration::ZERO,
        };
        assert_eq!(run.config_word(), 0xA702_0109);
        // 2 vCPUs time-sliced on 1 CPU; then one per CPU.
        assert_eq!(config.smp_word(), 0x0102);
        let spread = Config {
            host_cpus: 2,
            ..config
        };
        assert_eq!(spread.smp_word(), 0x0202);
    }

    #[test]
    fn the_test_configurations_cover_both_gics_host_modes_and_cpu_layouts() {
        for gic in [2, 3] {
            for vhe in [false, true] {
                for (vcpus, host_cpus) in [(1, 1), (2, 2), (2, 1)] {
                    let want = Config {
                        gic,
                        vhe,
                        vcpus,
                        host_cpus,
                    };
                    let n = CONFIGS.iter().filter(|c| **c == want).count();
                    assert_eq!(n, 1, "{}", want.describe());
                }
            }
        }
    }

    #[test]
    fn options_parse_with_the_qemu_choice() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let here = Path::new("/caller");
        let o = parse_options(&args(&[]), here).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.config, Config::DEFAULT);
        assert_eq!(o.qemu.qemus, [crate::qemu::Choice::Distro]);
        assert!(!o.qemu.under_load && !o.provision_only && o.root.is_none());
        let o = parse_options(
            &args(&[
                "--gic",
                "2",
                "--mode",
                "vhe",
                "--qemu",
                "10",
                "--under-load",
                "--root",
                "r",
                "--timeout",
                "90",
            ]),
            here,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            o.config,
            Config {
                gic: 2,
                vhe: true,
                ..Config::DEFAULT
            }
        );
        assert_eq!(o.qemu.qemus, [crate::qemu::Choice::Backports]);
        assert!(o.qemu.under_load);
        assert_eq!(o.root.as_deref(), Some(Path::new("/caller/r")));
        assert_eq!(o.timeout, 90);
        let o = parse_options(&args(&["--smp", "2"]), here).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.config.vcpus, o.config.host_cpus), (2, 2));
        let o = parse_options(&args(&["--smp", "2", "--host-cpus", "1"]), here)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((o.config.vcpus, o.config.host_cpus), (2, 1));
        for bad in [
            &["--gic", "4"][..],
            &["--mode", "el3"],
            &["--qemu", "7", "--qemu", "10"],
            &["--timeout", "x"],
            &["--smp"],
            &["--smp", "3"],
            &["--smp", "2", "--host-cpus", "3"],
            &["--gic"],
        ] {
            assert!(parse_options(&args(bad), here).is_err(), "{bad:?}");
        }
    }
}
