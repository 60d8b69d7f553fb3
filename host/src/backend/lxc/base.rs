//! Base images: one Debian rootfs per OS template, built once with
//! `lxc-create -t debian` and kept; app containers are overlay clones of it.
//!
//! Unprivileged clones need a base whose files already belong to the
//! container's id range: LXC's idmapped rootfs works only with the `dir`
//! storage driver, not with overlay. So each OS has two bases: the
//! privileged one as debootstrap made it, and a copy shifted into the range.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::BackendError;
use super::config::IdRange;
use super::process::{lock_file, tool};

/// Where a finished base says so; a base without it is a half-built leftover.
const READY_MARK: &str = "proximity-base-ready";
/// An unprivileged base whose hard-linked files were shifted once. Earlier
/// copies shifted a file once per name (perl, perl5.36.0: twice), so dpkg
/// could not replace it inside the container; those are made again.
const SHIFTED_ONCE_MARK: &str = "proximity-shifted-once";
const LOCK_FILE: &str = ".proximity-base.lock";
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const COPY_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The OS templates this backend can build, as (template prefix, base name, release).
const TEMPLATES: &[(&str, &str, &str)] = &[("debian-12", "proximity-base-debian-12", "bookworm")];

/// The base image name for an `os-template` value (`debian-12`, `debian-12-standard…`).
pub fn base_for(os_template: &str) -> Result<(&'static str, &'static str), BackendError> {
    TEMPLATES
        .iter()
        .find(|(prefix, _, _)| {
            os_template == *prefix
                || os_template.starts_with(&format!("{prefix}-"))
                || os_template.starts_with(&format!("{prefix}_"))
        })
        .map(|(_, name, release)| (*name, *release))
        .ok_or_else(|| {
            let known: Vec<&str> = TEMPLATES.iter().map(|(prefix, _, _)| *prefix).collect();
            BackendError::InvalidInput(format!(
                "the lxc backend has no `{os_template}` template: it builds {} from the Debian mirror with debootstrap \
                 (Alpine and other images need a download mirror this host cannot reach)",
                known.join(", ")
            ))
        })
}

pub fn userns_name(base: &str) -> String {
    format!("{base}-userns")
}

fn ready(lxcpath: &Path, name: &str) -> bool {
    lxcpath.join(name).join(READY_MARK).is_file()
}

/// The base to clone for this template, built first when missing.
pub async fn ensure(
    lxcpath: &Path,
    os_template: &str,
    unprivileged: bool,
    ids: (IdRange, IdRange),
) -> Result<String, BackendError> {
    let (base, release) = base_for(os_template)?;
    let wanted = if unprivileged { userns_name(base) } else { base.to_string() };
    let usable =
        |name: &str| ready(lxcpath, name) && (!unprivileged || lxcpath.join(name).join(SHIFTED_ONCE_MARK).is_file());
    if usable(&wanted) {
        return Ok(wanted);
    }
    let _lock = lock_file(&lxcpath.join(LOCK_FILE)).await?;
    if !ready(lxcpath, base) {
        build(lxcpath, base, release).await?;
    }
    if unprivileged && !usable(&wanted) {
        shift(lxcpath, base, &wanted, ids).await?;
    }
    Ok(wanted)
}

async fn remove_leftover(lxcpath: &Path, name: &str) -> Result<(), BackendError> {
    if lxcpath.join(name).exists() {
        tracing::warn!(base = name, "removing an unfinished or outdated base image");
        let p = lxcpath.as_os_str();
        if tool("lxc-destroy", [p, "-n".as_ref(), name.as_ref(), "-f".as_ref()], COPY_TIMEOUT).await.is_err() {
            let dir = lxcpath.join(name);
            tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(|err| BackendError::Failed(format!("removing {}: {err}", dir.display())))?;
        }
    }
    Ok(())
}

async fn build(lxcpath: &Path, name: &str, release: &str) -> Result<(), BackendError> {
    remove_leftover(lxcpath, name).await?;
    tracing::info!(
        base = name,
        lxcpath = %lxcpath.display(),
        "building the {release} base image with debootstrap (once; a few minutes the first time on this host)"
    );
    let started = std::time::Instant::now();
    let p = lxcpath.to_string_lossy();
    tool(
        "lxc-create",
        [
            "-P",
            &p,
            "-n",
            name,
            "-t",
            "debian",
            "--",
            "-r",
            release,
            "--security-mirror=http://deb.debian.org/debian-security",
        ],
        BUILD_TIMEOUT,
    )
    .await
    .map_err(|err| BackendError::Failed(format!("building base image {name}: {err}")))?;
    // The template writes the pre-bookworm security suite (`bookworm/updates`),
    // which apt rejects. This rootfs never runs, so a host write is safe.
    let sources = lxcpath.join(name).join("rootfs/etc/apt/sources.list");
    let text = format!(
        "deb http://deb.debian.org/debian {release} main\n\
         deb http://deb.debian.org/debian {release}-updates main\n\
         deb http://deb.debian.org/debian-security {release}-security main\n"
    );
    tokio::fs::write(&sources, text)
        .await
        .map_err(|err| BackendError::Failed(format!("writing {}: {err}", sources.display())))?;
    mark_ready(lxcpath, name).await?;
    tracing::info!(base = name, secs = started.elapsed().as_secs(), "base image ready");
    Ok(())
}

async fn mark_ready(lxcpath: &Path, name: &str) -> Result<(), BackendError> {
    let dir = lxcpath.join(name);
    // Unprivileged overlay mounts happen inside the user namespace, which
    // must be able to traverse to the lower rootfs.
    let _ = tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).await;
    tokio::fs::write(dir.join(READY_MARK), b"")
        .await
        .map_err(|err| BackendError::Failed(format!("marking base {name} ready: {err}")))
}

/// Copy `base` to `name` with every file's owner moved into the id ranges.
async fn shift(lxcpath: &Path, base: &str, name: &str, (uids, gids): (IdRange, IdRange)) -> Result<(), BackendError> {
    remove_leftover(lxcpath, name).await?;
    tracing::info!(base = name, "making the unprivileged copy of {base} (once)");
    let p = lxcpath.to_string_lossy();
    tool("lxc-copy", ["-P", &p, "-n", base, "-N", name], COPY_TIMEOUT).await?;
    let rootfs = lxcpath.join(name).join("rootfs");
    tokio::task::spawn_blocking(move || shift_tree(&rootfs, uids.start as u32, gids.start as u32))
        .await
        .map_err(|err| BackendError::Failed(format!("shifting ids: {err}")))?
        .map_err(|err| BackendError::Failed(format!("shifting ids of base {name}: {err}")))?;
    // With the map in the base's config, `lxc-copy` hands each clone's
    // overlay directories to the container's root.
    let config = lxcpath.join(name).join("config");
    let mut text = tokio::fs::read_to_string(&config)
        .await
        .map_err(|err| BackendError::Failed(format!("reading {}: {err}", config.display())))?;
    text.push_str(&format!(
        "lxc.include = /usr/share/lxc/config/userns.conf\nlxc.idmap = u 0 {} {}\nlxc.idmap = g 0 {} {}\n",
        uids.start,
        uids.count.min(65536),
        gids.start,
        gids.count.min(65536)
    ));
    tokio::fs::write(&config, text)
        .await
        .map_err(|err| BackendError::Failed(format!("writing {}: {err}", config.display())))?;
    let mark = lxcpath.join(name).join(SHIFTED_ONCE_MARK);
    tokio::fs::write(&mark, b"")
        .await
        .map_err(|err| BackendError::Failed(format!("writing {}: {err}", mark.display())))?;
    mark_ready(lxcpath, name).await
}

fn shift_tree(root: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    // A file with several names (hard links) is one inode: shift it once.
    let mut linked = std::collections::HashSet::new();
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let first_name = meta.is_dir() || meta.nlink() < 2 || linked.insert((meta.dev(), meta.ino()));
        if first_name {
            std::os::unix::fs::lchown(&path, Some(meta.uid() + uid), Some(meta.gid() + gid))?;
            if !meta.file_type().is_symlink() {
                // chown clears setuid/setgid bits: put the mode back.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            }
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (CAP_CHOWN), as the lxc backend does.
    #[test]
    fn hard_linked_files_are_shifted_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/perl"), b"x").unwrap();
        std::fs::hard_link(root.join("bin/perl"), root.join("bin/perl5")).unwrap();
        std::fs::write(root.join("bin/sh"), b"y").unwrap();
        std::os::unix::fs::symlink("sh", root.join("bin/dash")).unwrap();
        for path in ["", "bin", "bin/perl", "bin/sh"] {
            std::os::unix::fs::chown(root.join(path), Some(0), Some(0)).unwrap();
        }
        shift_tree(root, 100_000, 200_000).expect("shifting needs root (CAP_CHOWN)");
        for path in ["", "bin", "bin/perl", "bin/perl5", "bin/sh"] {
            let meta = std::fs::metadata(root.join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (100_000, 200_000), "{path}");
        }
        let link = std::fs::symlink_metadata(root.join("bin/dash")).unwrap();
        assert_eq!((link.uid(), link.gid()), (100_000, 200_000));
    }
}
