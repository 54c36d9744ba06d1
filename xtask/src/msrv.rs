//! The MSRV check: the workspace's `rust-version` must be at least what
//! edition 2024 needs and what every dependency of a published crate
//! declares.

use std::process::Command;

use serde_json::Value;

/// Edition 2024 is stable from Rust 1.85.
const EDITION_2024: (u64, u64) = (1, 85);

/// Checks the MSRV stated in the workspace against edition 2024 and every
/// normal dependency's own `rust-version`.
pub(crate) fn check() -> Result<(), String> {
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
    Ok(())
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
