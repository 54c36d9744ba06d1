//! The MSRV check: the workspace's `rust-version` must be at least what
//! edition 2024 needs and what every dependency of a published crate
//! declares, and the library crates must build with that toolchain from
//! the committed `Cargo.lock`.

use std::process::Command;

use serde_json::Value;

/// Edition 2024 is stable from Rust 1.85.
const EDITION_2024: (u64, u64) = (1, 85);

/// Checks the MSRV stated in the workspace against edition 2024 and every
/// normal dependency's own `rust-version`, then builds the library crates
/// with the toolchain of that version ([`build`]).
pub(crate) fn check() -> Result<(), String> {
    let stated = check_stated()?;
    build(stated)
}

/// Checks the MSRV stated in the workspace against edition 2024 and every
/// normal dependency's own `rust-version`; returns the stated version.
fn check_stated() -> Result<(u64, u64), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("no packages in cargo metadata")?;
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .ok_or("no workspace members")?
        .iter()
        .filter_map(Value::as_str)
        .collect();

    let find = |id: &str| packages.iter().find(|p| p["id"] == id);
    let stated = find_member(packages, "arch-timer-virt")
        .and_then(|p| p["rust_version"].as_str())
        .and_then(parse);

    // Walk the normal (not dev, not build) dependency graph of the library
    // crates, transitive dependencies included.
    let nodes = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("no resolve graph")?;
    let mut todo: Vec<&str> = members
        .iter()
        .copied()
        .filter(|id| {
            find(id).is_some_and(|p| !TOOLS.contains(&p["name"].as_str().unwrap_or_default()))
        })
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    let mut needed = EDITION_2024;
    let mut needed_by = "edition 2024".to_owned();
    while let Some(id) = todo.pop() {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        if !members.contains(&id)
            && let Some(pkg) = find(id)
            && let Some(v) = pkg["rust_version"].as_str().and_then(parse)
            && v > needed
        {
            needed = v;
            needed_by = pkg["name"].as_str().unwrap_or_default().to_owned();
        }
        let Some(node) = nodes.iter().find(|n| n["id"] == id) else {
            continue;
        };
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if normal && let Some(dep_id) = dep["pkg"].as_str() {
                todo.push(dep_id);
            }
        }
    }
    let stated = stated.ok_or("arch-timer-virt states no rust-version")?;
    println!(
        "rust-version {}.{}; highest requirement {}.{} ({needed_by})",
        stated.0, stated.1, needed.0, needed.1
    );
    if stated < needed {
        return Err(format!(
            "rust-version {}.{} is lower than {}.{} needed by {needed_by}",
            stated.0, stated.1, needed.0, needed.1
        ));
    }
    Ok(stated)
}

/// Where the MSRV build puts its artifacts, apart from the main toolchain's.
const TARGET_DIR: &str = "target/msrv";

/// Builds every library crate with the rustup toolchain of the stated
/// `rust-version` (`1.88` for `rust-version = "1.88"`), `--locked` so that
/// the committed `Cargo.lock` must resolve with that toolchain's cargo:
/// for the host with all features (the core's `mock`, gicv3's `fake`), and
/// the `no_std` crates' libraries for `aarch64-unknown-none`. Fails with
/// the commands to run if the toolchain or its target is not installed.
fn build(stated: (u64, u64)) -> Result<(), String> {
    let version = format!("{}.{}", stated.0, stated.1);
    let toolchain = msrv_toolchain(&version)?;
    let rustc = rustup_output(&["run", &toolchain, "rustc", "--version"])?;
    println!("MSRV toolchain {toolchain}: {}", rustc.trim());
    if !rustc.starts_with(&format!("rustc {version}.")) {
        return Err(format!(
            "toolchain {toolchain} runs `{}`, not Rust {version}",
            rustc.trim()
        ));
    }
    let installed = rustup_output(&["target", "list", "--toolchain", &toolchain, "--installed"])?;
    if !installed.lines().any(|l| l.trim() == crate::TARGET) {
        return Err(format!(
            "the MSRV toolchain {toolchain} lacks the {target} target: install it with \
             `rustup target add --toolchain {version} {target}` (.ci/run does)",
            target = crate::TARGET
        ));
    }

    let libs = crate::package::libraries()?;
    let mut host = vec![
        "run",
        &toolchain,
        "cargo",
        "build",
        "--locked",
        "--target-dir",
        TARGET_DIR,
        "--all-features",
    ];
    for lib in &libs {
        host.extend(["-p", &lib.name]);
    }
    rustup(&host)?;

    let mut bare = vec![
        "run",
        &toolchain,
        "cargo",
        "build",
        "--locked",
        "--target-dir",
        TARGET_DIR,
        "--target",
        crate::TARGET,
        "--lib",
    ];
    for c in crate::NO_STD_CRATES {
        bare.extend(["-p", c]);
    }
    rustup(&bare)
}

/// The name of the installed rustup toolchain for Rust `version` (`1.88`
/// or `1.88.x`), or the commands that install it.
fn msrv_toolchain(version: &str) -> Result<String, String> {
    let list = rustup_output(&["toolchain", "list"]).map_err(|e| {
        format!(
            "{e}\nthe MSRV build needs rustup with the Rust {version} toolchain: \
             `rustup toolchain install {version} --profile minimal`"
        )
    })?;
    pick_toolchain(&list, version).ok_or_else(|| {
        format!(
            "the MSRV toolchain Rust {version} is not installed: install it with \
             `rustup toolchain install {version} --profile minimal` and \
             `rustup target add --toolchain {version} {}` (.ci/run does)",
            crate::TARGET
        )
    })
}

/// The toolchain of `rustup toolchain list` output that is Rust `version`:
/// the `1.88-<host>` channel first, else a `1.88.x-<host>` release.
fn pick_toolchain(list: &str, version: &str) -> Option<String> {
    let names = || list.lines().filter_map(|l| l.split_whitespace().next());
    let channel = format!("{version}-");
    let release = format!("{version}.");
    names()
        .find(|n| n.starts_with(&channel))
        .or_else(|| names().find(|n| n.starts_with(&release)))
        .map(str::to_owned)
}

/// Runs `rustup args`, its output shown, with no variable that would make
/// the nested cargo use the calling toolchain's compiler.
fn rustup(args: &[&str]) -> Result<(), String> {
    println!("$ rustup {}", args.join(" "));
    crate::run(
        Command::new("rustup")
            .args(args)
            .env_remove("RUSTC")
            .env_remove("RUSTDOC"),
    )
}

/// Runs `rustup args` and returns its standard output.
fn rustup_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rustup")
        .args(args)
        .env_remove("RUSTC")
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustup {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Workspace members that are tools or examples, not libraries with an MSRV.
const TOOLS: [&str; 2] = ["xtask", "qemu-hypervisor"];

fn find_member<'a>(packages: &'a [Value], name: &str) -> Option<&'a Value> {
    packages
        .iter()
        .find(|p| p["name"] == name && p["source"].is_null())
}

fn parse(v: &str) -> Option<(u64, u64)> {
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_toolchain_comes_before_a_point_release() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    1.88.0-x86_64-unknown-linux-gnu\n\
                    1.88-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            pick_toolchain(list, "1.88").as_deref(),
            Some("1.88-x86_64-unknown-linux-gnu")
        );
        let release_only = "1.88.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            pick_toolchain(release_only, "1.88").as_deref(),
            Some("1.88.0-x86_64-unknown-linux-gnu")
        );
        // 1.880 is not 1.88, and a missing toolchain is no toolchain.
        assert_eq!(
            pick_toolchain("1.880-x86_64-unknown-linux-gnu\n", "1.88"),
            None
        );
        assert_eq!(
            pick_toolchain("stable-x86_64-unknown-linux-gnu\n", "1.88"),
            None
        );
    }
}
