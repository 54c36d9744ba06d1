//! QEMU 10 beside the distribution's QEMU 7.2, on Debian 12: the
//! `qemu-system-arm` packages of `bookworm-backports`, downloaded and
//! unpacked under `target/qemu-10/`, never installed.
//!
//! As root, the backports source is written as a deb822 file whose `URIs`
//! are copied at run time from the machine's own `debian.sources`, so that
//! no mirror is named by the project. Backports have apt's default pin
//! priority of 100: an upgrade never replaces the installed QEMU 7.2 with
//! them. Downloading (`apt-get download`) and unpacking (`dpkg -x`) need no
//! root, so a user whose apt already knows the backports suite gets QEMU 10
//! without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// The Debian release whose backports carry QEMU 10.
const CODENAME: &str = "bookworm";
/// The machine's own Debian source list, where the mirror is read from.
const DEBIAN_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
/// The backports source this module writes.
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/arch-timer-virt-backports.sources";
/// Debian's archive keyring, used when `debian.sources` names none.
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The package whose backports version decides the version of all.
const MAIN_PACKAGE: &str = "qemu-system-arm";
/// Everything QEMU 10's `qemu-system-aarch64` loads: the binary, its
/// firmware and keymaps, and the modules it opens at start-up.
const PACKAGES: [&str; 6] = [
    MAIN_PACKAGE,
    "qemu-system-common",
    "qemu-system-data",
    "qemu-system-gui",
    "qemu-system-modules-opengl",
    "qemu-system-modules-spice",
];

/// An unpacked QEMU 10: what [`crate::qemu::Qemu`] needs to run it.
#[derive(Clone, Debug)]
pub(crate) struct Unpacked {
    /// The Debian package version, e.g. `1:10.0.2+ds-2+deb13u1~bpo12+1`.
    pub(crate) version: String,
    /// `<dir>/usr/bin/qemu-system-aarch64`.
    pub(crate) binary: PathBuf,
    /// `<dir>/usr/share/qemu`, QEMU's `-L`.
    pub(crate) data_dir: PathBuf,
    /// `<dir>/usr/lib/<multiarch>/qemu`, QEMU's `QEMU_MODULE_DIR` (without
    /// it QEMU 10 opens the installed 7.2's modules and aborts).
    pub(crate) module_dir: PathBuf,
}

/// Where QEMU 10 is cached: `<target>/qemu-10`.
fn cache_dir() -> PathBuf {
    crate::qemu::target_dir().join("qemu-10")
}

/// Provides QEMU 10 from `bookworm-backports`, downloading and unpacking it
/// only when the cache under `target/qemu-10/` holds another version (or
/// none), or says exactly what to do.
pub(crate) fn ensure() -> Result<Unpacked> {
    let cache = cache_dir();
    let cached = cached(&cache);
    let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !is_debian_12(&os) {
        if let Some(unpacked) = cached {
            println!(
                "note: not Debian 12; using the QEMU {} already unpacked in {}",
                unpacked.version,
                cache.display()
            );
            return Ok(unpacked);
        }
        return Err(not_debian_help());
    }
    let root = crate::qemu::is_root();
    let mut wrote = false;
    if root {
        let debian = fs::read_to_string(DEBIAN_SOURCES)
            .map_err(|e| format!("{DEBIAN_SOURCES}: {e} (needed to find the Debian mirror)"))?;
        let stanza = backports_stanza(&debian)?;
        if fs::read_to_string(BACKPORTS_SOURCES).ok().as_deref() != Some(stanza.as_str()) {
            println!(
                "==> writing {BACKPORTS_SOURCES} ({CODENAME}-backports, mirror from {DEBIAN_SOURCES})"
            );
            fs::write(BACKPORTS_SOURCES, &stanza)
                .map_err(|e| format!("{BACKPORTS_SOURCES}: {e}"))?;
            wrote = true;
        }
    }
    let mut version = backports_version(&madison()?);
    if root && (wrote || version.is_none()) {
        println!("==> apt-get update (to learn {CODENAME}-backports)");
        crate::run(Command::new("apt-get").args(["update", "-q"]))?;
        version = backports_version(&madison()?);
    }
    let Some(version) = version else {
        if let Some(unpacked) = cached {
            println!(
                "note: apt knows no {CODENAME}-backports {MAIN_PACKAGE}; using the QEMU {} \
                 already unpacked in {}",
                unpacked.version,
                cache.display()
            );
            return Ok(unpacked);
        }
        return Err(if root {
            format!(
                "apt knows no {CODENAME}-backports version of {MAIN_PACKAGE} even after \
                 `apt-get update` with {BACKPORTS_SOURCES}"
            )
        } else {
            not_root_help()
        });
    };
    if let Some(unpacked) = cached
        && unpacked.version == version
    {
        println!(
            "QEMU {version} ({CODENAME}-backports) already unpacked in {}",
            cache.display()
        );
        return Ok(unpacked);
    }
    download_and_unpack(&cache, &version)
}

/// `apt-get download`s every package of [`PACKAGES`] at `version` and
/// unpacks them with `dpkg -x` into `<cache>/root`.
fn download_and_unpack(cache: &Path, version: &str) -> Result<Unpacked> {
    let debs = cache.join("debs");
    let root = cache.join("root");
    for dir in [&debs, &root] {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = fs::remove_file(cache.join("VERSION"));
    for (i, package) in PACKAGES.iter().enumerate() {
        println!(
            "==> [{}/{}] apt-get download {package}={version}",
            i + 1,
            PACKAGES.len()
        );
        crate::run(
            Command::new("apt-get")
                .args(["download", "-q", &format!("{package}={version}")])
                .current_dir(&debs),
        )?;
    }
    let mut files: Vec<PathBuf> = fs::read_dir(&debs)
        .map_err(|e| format!("{}: {e}", debs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    files.sort();
    if files.len() != PACKAGES.len() {
        return Err(format!(
            "expected {} .deb files in {}, found {}",
            PACKAGES.len(),
            debs.display(),
            files.len()
        ));
    }
    for deb in &files {
        println!("==> dpkg -x {}", deb.display());
        crate::run(Command::new("dpkg").arg("-x").arg(deb).arg(&root))?;
    }
    let unpacked = layout(&root, version)?;
    fs::write(cache.join("VERSION"), version).map_err(|e| format!("{}: {e}", cache.display()))?;
    println!("QEMU {version} unpacked in {}", root.display());
    Ok(unpacked)
}

/// The unpacked QEMU in `cache`, if its `VERSION` stamp and its files are
/// there.
fn cached(cache: &Path) -> Option<Unpacked> {
    let version = fs::read_to_string(cache.join("VERSION")).ok()?;
    layout(&cache.join("root"), version.trim()).ok()
}

/// The paths of a QEMU unpacked in `root`; the module directory is found
/// under `usr/lib/<multiarch>/qemu`, whatever the host architecture.
fn layout(root: &Path, version: &str) -> Result<Unpacked> {
    let binary = root.join("usr/bin/qemu-system-aarch64");
    let data_dir = root.join("usr/share/qemu");
    let module_dir = fs::read_dir(root.join("usr/lib"))
        .map_err(|e| format!("{}/usr/lib: {e}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("qemu")))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("no usr/lib/<arch>/qemu in {}", root.display()))?;
    for path in [&binary, &data_dir] {
        if !path.exists() {
            return Err(format!("{} is missing", path.display()));
        }
    }
    Ok(Unpacked {
        version: version.to_owned(),
        binary,
        data_dir,
        module_dir,
    })
}

fn madison() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["madison", MAIN_PACKAGE])
        .output()
        .map_err(|e| format!("cannot run apt-cache: {e}"))?;
    // apt-cache madison fails when it knows the package in no version.
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `/etc/os-release` (its text) is Debian 12.
fn is_debian_12(os_release: &str) -> bool {
    let value = |key: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix('=')
                .map(|v| v.trim().trim_matches('"'))
        })
    };
    value("ID") == Some("debian") && value("VERSION_ID") == Some("12")
}

/// One deb822 paragraph: its fields in order, continuation lines joined
/// with `\n`.
type Paragraph = Vec<(String, String)>;

/// Splits deb822 text into paragraphs; `#` comment lines are dropped.
fn paragraphs(text: &str) -> Vec<Paragraph> {
    let mut all = Vec::new();
    let mut current: Paragraph = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                all.push(std::mem::take(&mut current));
            }
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        all.push(current);
    }
    all
}

fn field<'a>(paragraph: &'a Paragraph, key: &str) -> Option<&'a str> {
    paragraph
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// The backports source to write, from the text of `debian.sources`: the
/// `URIs` (and a single-line `Signed-By`) of its enabled `deb` paragraph for
/// the release itself, with the suite `<codename>-backports`.
fn backports_stanza(debian_sources: &str) -> Result<String> {
    let release = paragraphs(debian_sources)
        .into_iter()
        .find(|p| {
            let has = |key: &str, word: &str| {
                field(p, key).is_some_and(|v| v.split_whitespace().any(|w| w == word))
            };
            has("Types", "deb")
                && has("Suites", CODENAME)
                && !field(p, "Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no"))
        })
        .ok_or(format!(
            "{DEBIAN_SOURCES} has no enabled `deb` paragraph for the suite {CODENAME}"
        ))?;
    let uris = field(&release, "URIs")
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|v| !v.is_empty())
        .ok_or(format!(
            "the {CODENAME} paragraph of {DEBIAN_SOURCES} has no URIs"
        ))?;
    let keyring = field(&release, "Signed-By")
        .filter(|v| !v.contains('\n') && !v.is_empty())
        .unwrap_or(DEFAULT_KEYRING);
    Ok(format!(
        "# Written by `cargo xtask` (arch-timer-virt): QEMU 10 for its test matrix is\n\
         # downloaded from here and unpacked under target/, never installed.\n\
         Types: deb\n\
         URIs: {uris}\n\
         Suites: {CODENAME}-backports\n\
         Components: main\n\
         Signed-By: {keyring}\n"
    ))
}

/// The `<codename>-backports` version in `apt-cache madison` output (the
/// first one listed, apt lists the newest first).
fn backports_version(madison: &str) -> Option<String> {
    let suite = format!(" {CODENAME}-backports/");
    madison.lines().find_map(|line| {
        let mut columns = line.split('|').map(str::trim);
        let package = columns.next()?;
        let version = columns.next()?;
        let source = columns.next()?;
        (package == MAIN_PACKAGE && format!(" {source}").contains(&suite) && !version.is_empty())
            .then(|| version.to_owned())
    })
}

fn not_debian_help() -> String {
    format!(
        "QEMU 10 is provisioned from Debian 12's {CODENAME}-backports, and this is not \
         Debian 12. Install a QEMU 10 (or later) yourself and pass \
         `--qemu /path/to/qemu-system-aarch64`, or test on one QEMU only with `--qemu 7`"
    )
}

fn not_root_help() -> String {
    format!(
        "apt knows no {CODENAME}-backports {MAIN_PACKAGE}, and adding the suite needs root. \
         Either run `cargo xtask` as root once, or add the suite yourself:\n\
         \n  sudo sh -c 'printf \"Types: deb\\nURIs: %s\\nSuites: {CODENAME}-backports\\n\
         Components: main\\nSigned-By: {DEFAULT_KEYRING}\\n\" \
         \"$(awk \"/^URIs:/{{print \\$2; exit}}\" {DEBIAN_SOURCES})\" > {BACKPORTS_SOURCES}'\
         \n  sudo apt-get update\n\
         \nthen run cargo xtask again (downloading and unpacking need no root). Or test on \
         one QEMU only with `--qemu 7`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `debian.sources` as Debian 12 installs it, with a made-up mirror.
    const DEBIAN: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn the_backports_source_copies_the_release_uris_not_a_comment() {
        let stanza = backports_stanza(DEBIAN).unwrap_or_else(|e| panic!("{e}"));
        let uris: Vec<&str> = stanza
            .lines()
            .filter_map(|l| l.strip_prefix("URIs: "))
            .collect();
        assert_eq!(uris, ["http://mirror.example/debian"]);
        assert!(stanza.contains("\nSuites: bookworm-backports\n"));
        assert!(stanza.contains("\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"));
        // What apt reads back is one paragraph with the copied mirror.
        let read = paragraphs(&stanza);
        assert_eq!(read.len(), 1);
        assert_eq!(
            field(&read[0], "uris"),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn several_uris_disabled_paragraphs_and_embedded_keys() {
        let text = "\
Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm

Types: deb-src deb
URIs: http://a.example/debian
 http://b.example/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----
";
        let stanza = backports_stanza(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(stanza.contains("\nURIs: http://a.example/debian http://b.example/debian\n"));
        assert!(stanza.contains(&format!("\nSigned-By: {DEFAULT_KEYRING}\n")));
        assert!(!stanza.contains("disabled.example"));
    }

    #[test]
    fn no_release_paragraph_or_no_uris_is_an_error() {
        assert!(backports_stanza("").is_err());
        let security_only = DEBIAN.split("\n\n").nth(1).unwrap_or_default();
        assert!(backports_stanza(security_only).is_err());
        assert!(backports_stanza("Types: deb\nSuites: bookworm\nURIs:\n").is_err());
    }

    #[test]
    fn the_version_is_the_backports_one() {
        let madison = "\
qemu-system-arm | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://mirror.example/debian bookworm-backports/main amd64 Packages
qemu-system-arm | 1:7.2+dfsg-7+deb12u18+b3 | http://mirror.example/debian bookworm/main amd64 Packages
qemu-system-arm | 1:7.2+dfsg-7+deb12u15 | http://mirror.example/debian-security bookworm-security/main amd64 Packages
";
        assert_eq!(
            backports_version(madison).as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        // Listed second, it is still the one picked.
        let reordered: String = madison.lines().rev().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            backports_version(&reordered).as_deref(),
            Some("1:10.0.2+ds-2+deb13u1~bpo12+1")
        );
        // No backports line: none, whatever else apt knows.
        let release_only: String = madison.lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert_eq!(backports_version(&release_only), None);
        assert_eq!(backports_version(""), None);
        // Another package's backports line does not count.
        assert_eq!(
            backports_version(
                "qemu-utils | 1:10.0.2 | http://mirror.example/debian bookworm-backports/main amd64 Packages"
            ),
            None
        );
    }

    #[test]
    fn debian_12_is_recognised() {
        assert!(is_debian_12(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n"
        ));
        assert!(!is_debian_12("VERSION_ID=\"13\"\nID=debian\n"));
        assert!(!is_debian_12("VERSION_ID=\"12\"\nID=ubuntu\n"));
        assert!(!is_debian_12(""));
    }
}
