//! Running one measured child process: wall time and peak resident set size.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The outcome of one measured command.
#[derive(Clone, Debug)]
pub struct Measured {
    pub secs: f64,
    /// Peak resident set size of the child, in bytes (Linux reports KiB; converted here).
    pub max_rss: u64,
    pub stdout: String,
}

/// Runs `cmd` to completion with stdout and stderr captured in `<log_dir>/<label>.{out,err}`,
/// and fails with the tail of stderr if it exits unsuccessfully.
///
/// The child is reaped with `wait4`, whose `rusage` covers exactly that child (and any
/// descendants it waited for), so peak RSS is not mixed up with earlier commands the way
/// `getrusage(RUSAGE_CHILDREN)` would be.
pub fn run(mut cmd: Command, log_dir: &Path, label: &str) -> Result<Measured> {
    let out_path = log_dir.join(format!("{label}.out"));
    let err_path = log_dir.join(format!("{label}.err"));
    let out =
        File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let err =
        File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let shown = format!("{cmd:?}");

    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("{label}: starting {shown}"))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let (status, usage) = wait4(pid).with_context(|| format!("{label}: waiting for {shown}"))?;
    let secs = start.elapsed().as_secs_f64();
    // `child` was reaped by wait4; dropping a std Child neither waits nor kills.
    drop(child);

    let stdout = std::fs::read_to_string(&out_path)
        .with_context(|| format!("reading {}", out_path.display()))?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let how = if libc::WIFEXITED(status) {
            format!("exit status {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("signal {}", libc::WTERMSIG(status))
        } else {
            format!("wait status {status:#x}")
        };
        bail!(
            "{label}: {shown} failed with {how}\n--- stderr (tail; full log in {}) ---\n{}",
            err_path.display(),
            tail(&stderr, 40)
        );
    }
    Ok(Measured {
        secs,
        max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        stdout,
    })
}

fn wait4(pid: libc::pid_t) -> std::io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers refer to live locals of the right types for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Finds `name` as a path (if it has a slash) or on `PATH`.
pub fn find_program(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 || name.is_absolute() {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Bytes held under `dir`: the sum of file lengths (what an object store would hold), and
/// the space allocated on disk.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct DirSize {
    pub apparent: u64,
    pub on_disk: u64,
}

pub fn dir_size(dir: &Path) -> Result<DirSize> {
    use std::os::unix::fs::MetadataExt;
    let mut total = DirSize::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry?;
            let m = entry.metadata()?;
            if m.is_dir() {
                stack.push(entry.path());
            } else if m.is_file() {
                total.apparent += m.len();
                total.on_disk += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}
