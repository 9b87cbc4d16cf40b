//! A throwaway PostgreSQL cluster a test may stop and start (the shared
//! server from `PATROL_TEST_POSTGRES_URL` must never be stopped): `initdb`
//! into a temporary folder, a free loopback port, `pg_ctl` as scripts/test.sh
//! runs them (as the `postgres` user when the tests run as root, since
//! `initdb` refuses root). Stopped with `-m immediate` — a crash, as far as
//! clients can tell — and removed on drop. A cluster may also be started
//! TLS-only, with a certificate the test made.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A server's TLS certificate (PEM, leaf first) and its private key (PEM).
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl PgCluster {
    /// Creates and starts a cluster. Panics, saying how to get PostgreSQL,
    /// when its server binaries cannot be found: a chaos test that cannot
    /// run must not pass.
    pub fn start_new() -> Self {
        let mut cluster = Self::init();
        cluster.start();
        cluster
    }

    /// Creates and starts a cluster that speaks TLS with `tls` and refuses
    /// plaintext connections (pg_hba.conf has `hostssl` lines only), so a
    /// client that quietly falls back to plaintext is refused, not passed.
    pub fn start_tls_only(tls: &ServerTls) -> Self {
        let mut cluster = Self::init();
        cluster.require_tls(tls);
        cluster.start();
        cluster
    }

    /// `initdb` into a fresh temporary folder; not started.
    fn init() -> Self {
        let bin = find_pg_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server binaries (initdb, pg_ctl) were not found on PATH or in \
                 /usr/lib/postgresql/*/bin: run the suite with scripts/test.sh, which installs them"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("patrol-test-pg.")
            .tempdir()
            .expect("temp dir for the cluster");
        let port = free_port();
        let cluster = Self {
            bin,
            dir,
            port,
            running: false,
        };
        let data = cluster.data_dir();
        cluster.run_as_owner(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        cluster
    }

    /// Installs the server's certificate and key, turns `ssl` on and
    /// allows TCP connections over TLS only. `run_as_owner` hands the files
    /// to the server's user before it starts; the server refuses a key
    /// others can read, hence 0600.
    fn require_tls(&self, tls: &ServerTls) {
        let data = Path::new(&self.data_dir()).to_path_buf();
        std::fs::write(data.join("server.crt"), &tls.cert_pem).expect("server.crt");
        let key = data.join("server.key");
        std::fs::write(&key, &tls.key_pem).expect("server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("server.key mode 0600");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("postgresql.conf");
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
        )
        .expect("postgresql.conf appended");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
    }

    /// `postgres://` URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log").display().to_string();
        let options = format!(
            // fsync off is safe here: `-m immediate` kills the server, not
            // the kernel, so written WAL survives. synchronous_commit stays
            // on: off, a stop would lose transactions already acknowledged.
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.run_as_owner(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-o", &options, "start"],
        );
        self.running = true;
    }

    /// Stops the server at once (`-m immediate`: no checkpoint, clients cut).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let data = self.data_dir();
        self.run_as_owner("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        self.running = false;
    }

    /// The server's own log, for failure messages.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the cluster's binaries as the cluster's owner; panics
    /// with its output if it fails.
    fn run_as_owner(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let output = if running_as_root() {
            ensure_postgres_user();
            chown_to_postgres(self.dir.path());
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed ({}):\n{}\n--- server log\n{}",
            program.display(),
            output.status,
            output_text(&output),
            self.server_log()
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let program = self.bin.join("pg_ctl");
            let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
            let _ = if running_as_root() {
                Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(&program)
                    .args(args)
                    .output()
            } else {
                Command::new(&program).args(args).output()
            };
        }
    }
}

/// The folder holding `initdb` and `pg_ctl`, found as scripts/test.sh's
/// `find_pg_bin` finds it: on PATH (following links), else the newest
/// `/usr/lib/postgresql/*/bin`.
fn find_pg_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| {
            let initdb = dir.join("initdb");
            (initdb.is_file() && dir.join("pg_ctl").is_file())
                .then(|| std::fs::canonicalize(&initdb).ok())
                .flatten()
                .and_then(|real| real.parent().map(Path::to_path_buf))
        })
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    installed.sort();
    installed.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn ensure_postgres_user() {
    let exists = Command::new("id")
        .arg("postgres")
        .output()
        .is_ok_and(|output| output.status.success());
    if !exists {
        let output = Command::new("useradd")
            .args(["--system", "--no-create-home", "postgres"])
            .output()
            .expect("useradd runs");
        assert!(
            output.status.success(),
            "cannot create the postgres user: {}",
            output_text(&output)
        );
    }
}

fn chown_to_postgres(dir: &Path) {
    let output = Command::new("chown")
        .arg("-R")
        .arg("postgres")
        .arg(dir)
        .output()
        .expect("chown runs");
    assert!(
        output.status.success(),
        "cannot hand {} to postgres: {}",
        dir.display(),
        output_text(&output)
    );
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
