//! The packaging check: what `cargo package` puts into each library crate's
//! package, and the metadata the documentation build reads.
//!
//! Every published crate must carry both license texts and the changelog
//! (users of a published crate get nothing else), its README, and
//! `[package.metadata.docs.rs]` with `--cfg docsrs` (which turns on the
//! `doc_cfg` badges). No crate names a documentation address of its own:
//! the registry links each crate's generated documentation itself. The license and changelog files in the packages are
//! symlinks to the root files; they must read the same as the root files, so
//! a copy that fell behind fails too. A README is also the crate's docs
//! (`#![doc = include_str!("../README.md")]`) and the registry's page, so
//! its links must work in both: no rustdoc-only intra-doc paths (an item is
//! named as plain code, and no web address of the documentation host is
//! written into the README either).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Files every library package must list, besides its `readme`.
pub(crate) const REQUIRED: [&str; 3] = ["LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md"];

/// A library crate of the workspace: a member that may be published.
pub(crate) struct Library {
    /// The package name.
    pub(crate) name: String,
    /// The directory holding its `Cargo.toml`.
    pub(crate) dir: PathBuf,
    /// Its `readme`, if it declares one.
    readme: Option<String>,
    /// Its `[package.metadata.docs.rs]` table, if any.
    docs_rs: Option<Value>,
}

/// The workspace's library crates: every member without `publish = false`
/// (the example hypervisor and xtask are not published), from `cargo
/// metadata`. Fails if there is none, so that no check passes on nothing.
pub(crate) fn libraries() -> Result<Vec<Library>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let meta: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let libs = libraries_in(&meta)?;
    if libs.is_empty() {
        return Err("cargo metadata lists no publishable workspace member".into());
    }
    Ok(libs)
}

/// The publishable workspace members of a `cargo metadata` document.
fn libraries_in(meta: &Value) -> Result<Vec<Library>, String> {
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .ok_or("no workspace members in cargo metadata")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let packages = meta["packages"]
        .as_array()
        .ok_or("no packages in cargo metadata")?;
    let mut libs = Vec::new();
    for pkg in packages {
        let id = pkg["id"].as_str().unwrap_or_default();
        // `publish` is null when the crate may go to any registry, and a
        // list of registries (empty for `publish = false`) otherwise.
        let publishable = match &pkg["publish"] {
            Value::Null => true,
            Value::Array(registries) => !registries.is_empty(),
            _ => false,
        };
        if !members.contains(&id) || !publishable {
            continue;
        }
        let name = pkg["name"]
            .as_str()
            .ok_or_else(|| format!("package {id} has no name"))?;
        let manifest = pkg["manifest_path"]
            .as_str()
            .ok_or_else(|| format!("{name} has no manifest path"))?;
        let dir = Path::new(manifest)
            .parent()
            .ok_or_else(|| format!("{name}: {manifest} has no parent directory"))?;
        libs.push(Library {
            name: name.to_owned(),
            dir: dir.to_owned(),
            readme: pkg["readme"].as_str().map(str::to_owned),
            docs_rs: pkg["metadata"]["docs"]["rs"]
                .is_object()
                .then(|| pkg["metadata"]["docs"]["rs"].clone()),
        });
    }
    Ok(libs)
}

/// Runs `cargo package --list` for every library crate and fails, naming
/// the crate and what is wrong, if a package lacks a license file, the
/// changelog or its README, if such a file differs from the root's, or if
/// the crate lacks its documentation metadata. Every crate is checked before the
/// verdict.
pub(crate) fn check() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut problems = Vec::new();
    let libs = libraries()?;
    for lib in &libs {
        println!("$ cargo package --list --allow-dirty -p {}", lib.name);
        let out = Command::new(&cargo)
            .args(["package", "--list", "--allow-dirty", "-p", &lib.name])
            .output()
            .map_err(|e| format!("cannot start cargo package: {e}"))?;
        if !out.status.success() {
            problems.push(format!(
                "{}: cargo package --list failed: {}",
                lib.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        let listing = String::from_utf8_lossy(&out.stdout);
        let before = problems.len();
        problems.extend(missing_files(lib, &listing));
        // The current directory is the workspace root (see `main`).
        problems.extend(differing_files(lib, Path::new(".")));
        problems.extend(docs_metadata(lib));
        problems.extend(readme_links(lib));
        if problems.len() == before {
            println!(
                "    {}: {} files, {} present, documentation metadata present, README links work outside rustdoc",
                lib.name,
                listing.lines().count(),
                required(lib).join(", ")
            );
        }
    }
    if problems.is_empty() {
        println!("packages checked: {}", libs.len());
        Ok(())
    } else {
        Err(format!(
            "{} packaging problems:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

/// The files `lib`'s package must list: [`REQUIRED`] and its README.
fn required(lib: &Library) -> Vec<String> {
    let mut files: Vec<String> = REQUIRED.iter().map(|&f| f.to_owned()).collect();
    if let Some(readme) = &lib.readme {
        files.push(readme.clone());
    }
    files
}

/// The required files that `listing` (the output of `cargo package
/// --list`, one path a line) lacks, one problem each.
fn missing_files(lib: &Library, listing: &str) -> Vec<String> {
    required(lib)
        .into_iter()
        .filter(|file| !listing.lines().any(|line| line.trim() == file))
        .map(|file| format!("{}: the package lacks {file}", lib.name))
        .collect()
}

/// The license and changelog files of `lib` whose content (symlinks
/// followed) is not the same as the file of that name in `root`.
fn differing_files(lib: &Library, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for file in REQUIRED {
        let ours = lib.dir.join(file);
        let theirs = root.join(file);
        match (fs::read(&ours), fs::read(&theirs)) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => problems.push(format!(
                "{}: {} differs from {} (link it: ln -sf <relative path to the root>/{file} {})",
                lib.name,
                ours.display(),
                theirs.display(),
                ours.display()
            )),
            (Err(e), _) => problems.push(format!("{}: {}: {e}", lib.name, ours.display())),
            (_, Err(e)) => problems.push(format!("{}: {}: {e}", lib.name, theirs.display())),
        }
    }
    problems
}

/// What `lib` lacks for its documentation build:
/// `[package.metadata.docs.rs]` with `rustdoc-args` holding `--cfg docsrs`.
fn docs_metadata(lib: &Library) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(docs_rs) = &lib.docs_rs else {
        problems.push(format!("{}: no [package.metadata.docs.rs]", lib.name));
        return problems;
    };
    let args: Vec<&str> = docs_rs["rustdoc-args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !args.windows(2).any(|w| w == ["--cfg", "docsrs"]) {
        problems.push(format!(
            "{}: [package.metadata.docs.rs] rustdoc-args lacks \"--cfg\", \"docsrs\"",
            lib.name
        ));
    }
    problems
}

/// The links of `lib`'s README that only rustdoc resolves (see
/// [`rustdoc_only_links`]).
fn readme_links(lib: &Library) -> Vec<String> {
    let Some(readme) = &lib.readme else {
        return Vec::new();
    };
    match fs::read_to_string(lib.dir.join(readme)) {
        Ok(text) => rustdoc_only_links(&text)
            .into_iter()
            .map(|link| {
                format!(
                    "{}: {readme}: the link {link} works only in rustdoc, not on the \
                     registry's page (name the item as plain code)",
                    lib.name
                )
            })
            .collect(),
        Err(e) => vec![format!("{}: cannot read {readme}: {e}", lib.name)],
    }
}

/// Whether a link target works outside rustdoc: a web address or an anchor
/// of the same page.
fn absolute(target: &str) -> bool {
    target.starts_with("https://") || target.starts_with("http://") || target.starts_with('#')
}

/// The links of a Markdown text that only rustdoc resolves, outside code
/// blocks: an inline link or a reference definition whose target is not a
/// web address (`[x](arch_timer_virt::TimerHw)`), and a reference link
/// (`` [`VcpuTimer::load`] ``, `[text][key]`) with no definition in the
/// text.
pub(crate) fn rustdoc_only_links(text: &str) -> Vec<String> {
    let mut defs = HashSet::new();
    let mut bad = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some((key, target)) = line
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("]: "))
            .filter(|(key, _)| !key.contains(']'))
        {
            defs.insert(key.to_owned());
            if !absolute(target.trim()) {
                bad.push(format!("[{key}]: {}", target.trim()));
            }
            continue;
        }
        prose.push_str(line);
        prose.push('\n');
    }
    // Inline links: `](target)`.
    for (at, _) in prose.match_indices("](") {
        let target = prose[at + 2..].split(')').next().unwrap_or_default();
        if !absolute(target) {
            bad.push(format!("({target})"));
        }
    }
    // Full references `][key]` and rustdoc's shortcut `` [`path`] ``.
    for (at, _) in prose.match_indices("][") {
        let key = prose[at + 2..].split(']').next().unwrap_or_default();
        if !defs.contains(key) {
            bad.push(format!("[{key}]"));
        }
    }
    for (at, _) in prose.match_indices("[`") {
        let Some(len) = prose[at + 1..].find("`]") else {
            continue;
        };
        let key = &prose[at + 1..at + 1 + len + 1];
        let after = prose[at + 1 + len + 2..].chars().next();
        if !matches!(after, Some('(' | '[')) && !defs.contains(key) {
            bad.push(format!("[{key}]"));
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lib(dir: &Path) -> Library {
        Library {
            name: "demo".into(),
            dir: dir.to_owned(),
            readme: Some("README.md".into()),
            docs_rs: Some(json!({ "rustdoc-args": ["--cfg", "docsrs"] })),
        }
    }

    #[test]
    fn a_complete_listing_passes_and_each_missing_file_is_named() {
        let lib = lib(Path::new("."));
        let full = "Cargo.toml\nLICENSE-MIT\nLICENSE-APACHE\nCHANGELOG.md\nREADME.md\nsrc/lib.rs\n";
        assert!(missing_files(&lib, full).is_empty());
        for file in ["LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md", "README.md"] {
            let listing: String = full
                .lines()
                .filter(|l| *l != file)
                .map(|l| format!("{l}\n"))
                .collect();
            let problems = missing_files(&lib, &listing);
            assert_eq!(problems, [format!("demo: the package lacks {file}")]);
        }
        // A file of that name in a subdirectory is not the package's.
        let nested = full.replace("LICENSE-MIT\n", "src/LICENSE-MIT\n");
        assert_eq!(missing_files(&lib, &nested).len(), 1);
    }

    #[test]
    fn files_must_read_as_the_root_files() {
        let base = std::env::temp_dir().join(format!("xtask-package-{}", std::process::id()));
        let root = base.join("root");
        let krate = base.join("root/crate");
        fs::create_dir_all(&krate).unwrap();
        for file in REQUIRED {
            fs::write(root.join(file), format!("{file} text\n")).unwrap();
            fs::write(krate.join(file), format!("{file} text\n")).unwrap();
        }
        let lib = lib(&krate);
        assert!(differing_files(&lib, &root).is_empty());
        fs::write(krate.join("CHANGELOG.md"), "an old changelog\n").unwrap();
        let problems = differing_files(&lib, &root);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("CHANGELOG.md differs"), "{problems:?}");
        fs::remove_file(krate.join("LICENSE-MIT")).unwrap();
        assert_eq!(differing_files(&lib, &root).len(), 2);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn docs_rs_metadata_must_pass_cfg_docsrs() {
        let mut lib = lib(Path::new("."));
        assert!(docs_metadata(&lib).is_empty());
        lib.docs_rs = Some(json!({ "rustdoc-args": ["--cfg", "other"] }));
        assert_eq!(docs_metadata(&lib).len(), 1);
        lib.docs_rs = None;
        assert_eq!(docs_metadata(&lib).len(), 1);
    }

    #[test]
    fn readme_links_must_work_outside_rustdoc() {
        let good = "See [`TimerHw`] and [`load`](#load), [b][k], [c](#top).\n\
                    ```rust\n// [`InCode`] is fine\n```\n\n\
                    [`TimerHw`]: #timerhw\n[k]: #k\n";
        assert!(
            rustdoc_only_links(good).is_empty(),
            "{:?}",
            rustdoc_only_links(good)
        );
        let bad = "[`TimerHw`](arch_timer_virt::TimerHw), [`VcpuTimer::load`], [x][nokey].\n\
                   [`Local`]: arch_timer_virt\n";
        assert_eq!(
            rustdoc_only_links(bad),
            [
                "[`Local`]: arch_timer_virt",
                "(arch_timer_virt::TimerHw)",
                "[nokey]",
                "[`VcpuTimer::load`]",
            ]
        );
    }

    #[test]
    fn only_publishable_members_are_libraries() {
        let meta = json!({
            "workspace_members": ["a 0.1.0", "tool 0.1.0", "reg 0.1.0"],
            "packages": [
                { "id": "a 0.1.0", "name": "a", "publish": null,
                  "manifest_path": "/w/a/Cargo.toml", "metadata": null },
                { "id": "tool 0.1.0", "name": "tool", "publish": [],
                  "manifest_path": "/w/tool/Cargo.toml", "metadata": null },
                { "id": "reg 0.1.0", "name": "reg", "publish": ["mine"],
                  "manifest_path": "/w/reg/Cargo.toml", "metadata": null },
                { "id": "dep 1.0.0", "name": "dep", "publish": null,
                  "manifest_path": "/r/dep/Cargo.toml", "metadata": null },
            ],
        });
        let libs = libraries_in(&meta).unwrap();
        let names: Vec<&str> = libs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "reg"]);
        assert_eq!(libs[0].dir, Path::new("/w/a"));
        assert!(libs[0].docs_rs.is_none());
    }
}
