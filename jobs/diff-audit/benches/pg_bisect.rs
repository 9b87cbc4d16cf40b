//! Diff-audit bench (issue acceptance 4b, 4c): two PostgreSQL copies of a
//! 10M-row, 8-column table compared by patrol's bisection
//! (`bisect::compare`, `Tuning::default()`) and by reladiff 0.6.0's
//! hashdiff, on the same server in the same run.
//!
//! - **Diff case:** `patrol_bench_eu.public.audit` vs
//!   `patrol_bench_us.public.audit`, the US copy with 100 planted
//!   differences scattered over the whole id range (changed amounts,
//!   NULL vs '' notes, timestamps truncated to milliseconds, rows deleted
//!   on US, extra rows on US). Both tools must name exactly the 100
//!   planted keys, each with the right kind (changed / left only / right
//!   only).
//! - **Identical case:** `patrol_bench_eu.public.audit` against itself
//!   through two different URLs (so reladiff still runs hashdiff); both
//!   must report nothing.
//!
//! Every run goes through two counting TCP proxies (one per database side,
//! fresh for each run, inside this process), so "bytes from a database" is
//! the same measure for both tools: every byte the server sent to the
//! client, connection set-up and catalog queries included. Wall time is
//! from the tool's start (patrol: `postgres::open` of both sides; reladiff:
//! process spawn) to its answer.
//!
//! The two databases are built once (generate_series, then a primary key,
//! VACUUM ANALYZE) and kept between runs; `bench_meta` records the row
//! count and a version tag, and they are rebuilt when either differs.
//!
//! `cargo bench -p patrol-job-diff-audit --bench pg_bisect`
//!
//! Environment: `PATROL_BENCH_POSTGRES_URL` (else `PATROL_TEST_POSTGRES_URL`):
//! the server, any database on it; `PATROL_BENCH_ROWS` (10000000);
//! `RELADIFF` (the reladiff executable; default a venv made in
//! `target/reladiff-venv` with `pip install 'reladiff[postgresql]==0.6.0'`);
//! `PATROL_BENCH_RELADIFF_THREADS` (`1,4`: the `-j` values run).
//!
//! Exits 1 if a tool misses, adds or misclassifies a difference, or if
//! reladiff logs an error.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use patrol_job_diff_audit::bisect::{self, BisectStats, Tuning};
use patrol_job_diff_audit::postgres;
use patrol_job_diff_audit::snapshot::{CompareSpec, Diff, Reason, Side};
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Bump when the generated data or the planted differences change: the
/// kept databases are rebuilt.
const VERSION: &str = "pg_bisect-1";
const EU_DB: &str = "patrol_bench_eu";
const US_DB: &str = "patrol_bench_us";
const KEY: [&str; 2] = ["tenant", "id"];
const COLUMNS: [&str; 6] = ["note", "amount", "at", "region", "active", "score"];
const PLANTED: usize = 100;

/// A key as both tools print it: (tenant, id).
type Key = (String, i64);

/// What a key's difference is, seen from EU (left) vs US (right).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// On both sides, with different values.
    Changed,
    /// On EU only (deleted on US).
    LeftOnly,
    /// On US only (an extra row).
    RightOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    Amount,
    NullVsEmpty,
    Millis,
    Deleted,
    Extra,
}

impl Plant {
    fn seen(self) -> Seen {
        match self {
            Plant::Amount | Plant::NullVsEmpty | Plant::Millis => Seen::Changed,
            Plant::Deleted => Seen::LeftOnly,
            Plant::Extra => Seen::RightOnly,
        }
    }
}

/// The server URL split so a database name and a proxy port can be put in.
#[derive(Debug, Clone)]
struct Server {
    /// `user[:password]@`, or empty.
    userinfo: String,
    /// `host:port` to forward to.
    upstream: String,
    /// `?…` after the database name, or empty.
    query: String,
}

impl Server {
    fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| {
                anyhow!("the server URL must start with postgres:// or postgresql://")
            })?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((user, host)) => (format!("{user}@"), host),
            None => (String::new(), authority),
        };
        if hostport.is_empty() {
            bail!("the server URL names no host (a Unix socket cannot be proxied)");
        }
        let upstream = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:5432")
        };
        let query = path
            .find('?')
            .map_or(String::new(), |at| path[at..].to_string());
        Ok(Self {
            userinfo,
            upstream,
            query,
        })
    }

    /// Straight to the server.
    fn direct(&self, db: &str) -> String {
        format!(
            "postgresql://{}{}/{db}{}",
            self.userinfo, self.upstream, self.query
        )
    }

    /// Through a proxy on this machine.
    fn via(&self, proxy: &Proxy, db: &str) -> String {
        format!(
            "postgresql://{}127.0.0.1:{}/{db}{}",
            self.userinfo, proxy.port, self.query
        )
    }
}

/// A TCP forwarder to the server that counts the bytes each way.
struct Proxy {
    port: u16,
    /// Server → client.
    down: Arc<AtomicU64>,
    /// Client → server.
    up: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let down = Arc::new(AtomicU64::new(0));
        let up = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_string();
        let (d, u, c) = (down.clone(), up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (d, u, c, upstream) = (d.clone(), u.clone(), c.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    client.set_nodelay(true).ok();
                    server.set_nodelay(true).ok();
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, u), pump(sr, cw, d));
                });
            }
        });
        Ok(Self {
            port,
            down,
            up,
            connections,
            accept,
        })
    }

    fn bytes(&self) -> (u64, u64) {
        (
            self.down.load(Ordering::Relaxed),
            self.up.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    to.shutdown().await.ok();
}

/// One tool's run on one case.
struct Run {
    tool: String,
    case: &'static str,
    wall: Duration,
    /// Bytes server → client, per side; then client → server.
    from_left: u64,
    from_right: u64,
    to_left: u64,
    to_right: u64,
    connections: u64,
    /// Rows patrol read row by row (left, right).
    fetched: Option<(usize, usize)>,
    stats: Option<BisectStats>,
    /// Peak resident set, KiB.
    peak_rss_kib: Option<u64>,
    found: BTreeMap<Key, Seen>,
    /// Diff lines (reladiff: `-`/`+` lines; patrol: diffs).
    lines: usize,
    /// The 1-minute load average when the run ended.
    load: String,
}

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn tenant_of(id: i64) -> String {
    format!("t{}", id % 500)
}

/// The generated `at` column's microseconds within its second.
fn micros_of(id: i64) -> i64 {
    (id * 7919) % 1_000_000
}

/// The 100 planted differences: one in each hundredth of the id range, the
/// kinds shuffled over the slices. Returns (key, kind, id of the EU row).
fn planted(rows: i64) -> Vec<(Key, Plant, i64)> {
    let mut kinds = Vec::new();
    for (kind, n) in [
        (Plant::Amount, 30),
        (Plant::NullVsEmpty, 20),
        (Plant::Millis, 20),
        (Plant::Deleted, 15),
        (Plant::Extra, 15),
    ] {
        kinds.extend(std::iter::repeat_n(kind, n));
    }
    let mut rng = Rng(0x5eed_d1ff_a0d1_7000);
    for at in (1..kinds.len()).rev() {
        let other = (rng.next() % (at as u64 + 1)) as usize;
        kinds.swap(at, other);
    }
    let slice = rows / PLANTED as i64;
    kinds
        .into_iter()
        .enumerate()
        .map(|(k, kind)| {
            let start = 1 + k as i64 * slice;
            loop {
                let id = start + (rng.next() % slice as u64) as i64;
                let fits = match kind {
                    // The generated note is NULL on multiples of 97.
                    Plant::NullVsEmpty => id % 97 == 0,
                    // date_trunc to ms must change the value.
                    Plant::Millis => micros_of(id) % 1000 != 0,
                    _ => true,
                };
                if fits {
                    let key = match kind {
                        Plant::Extra => (format!("t{}", (id + 1) % 500), id),
                        _ => (tenant_of(id), id),
                    };
                    break (key, kind, id);
                }
            }
        })
        .collect()
}

fn log(message: impl AsRef<str>) {
    eprintln!(
        "[{}] {}",
        chrono::Local::now().format("%H:%M:%S"),
        message.as_ref()
    );
}

async fn meta(server: &Server, db: &str) -> Result<Option<(i64, String)>> {
    let mut conn = PgConnection::connect(&server.direct(db)).await?;
    let row: Option<(i64, String)> = if sqlx::query_scalar::<_, bool>(
        "SELECT to_regclass('public.bench_meta') IS NOT NULL AND to_regclass('public.audit') IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await?
    {
        sqlx::query_as("SELECT rows, version FROM bench_meta")
            .fetch_optional(&mut conn)
            .await?
    } else {
        None
    };
    conn.close().await.ok();
    Ok(row)
}

async fn db_exists(admin: &mut PgConnection, db: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db)
            .fetch_one(&mut *admin)
            .await?,
    )
}

/// Builds (or keeps) both databases; returns the planted differences.
async fn prepare(server: &Server, rows: i64) -> Result<Vec<(Key, Plant, i64)>> {
    let plants = planted(rows);
    let mut admin = PgConnection::connect(&server.direct("postgres"))
        .await
        .context("cannot connect to the server's `postgres` database")?;
    let eu_tag = format!("{VERSION} eu");
    let us_tag = format!("{VERSION} us");
    let eu_ok = db_exists(&mut admin, EU_DB).await?
        && meta(server, EU_DB).await? == Some((rows, eu_tag.clone()));
    let us_ok = eu_ok
        && db_exists(&mut admin, US_DB).await?
        && meta(server, US_DB).await? == Some((rows, us_tag.clone()));
    if !eu_ok {
        log(format!("building {EU_DB} ({rows} rows)…"));
        let started = Instant::now();
        admin
            .execute(format!("DROP DATABASE IF EXISTS {US_DB} WITH (FORCE)").as_str())
            .await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {EU_DB} WITH (FORCE)").as_str())
            .await?;
        admin
            .execute(format!("CREATE DATABASE {EU_DB}").as_str())
            .await?;
        let mut eu = PgConnection::connect(&server.direct(EU_DB)).await?;
        eu.execute(
            "CREATE TABLE public.audit (tenant text NOT NULL, id int8 NOT NULL, note text, \
               amount int8, at timestamp(6), region text, active bool, score float8)",
        )
        .await?;
        sqlx::query(
            "INSERT INTO public.audit \
             SELECT 't' || (i % 500), i, \
                    CASE WHEN i % 97 = 0 THEN NULL ELSE 'note ' || i END, \
                    (i * 7919) % 1000003, \
                    TIMESTAMP '2024-01-01 00:00:00' + i * INTERVAL '1 second' \
                      + ((i * 7919) % 1000000) * INTERVAL '1 microsecond', \
                    (ARRAY['eu-west-1', 'us-east-1', 'ap-south-1'])[1 + i % 3], \
                    i % 7 <> 0, \
                    CASE WHEN i % 101 = 0 THEN NULL ELSE (i % 100003)::float8 / 7 END \
             FROM generate_series(1::int8, $1) AS i",
        )
        .bind(rows)
        .execute(&mut eu)
        .await?;
        eu.execute("ALTER TABLE public.audit ADD PRIMARY KEY (tenant, id)")
            .await?;
        eu.execute("VACUUM (ANALYZE) public.audit").await?;
        eu.execute("CREATE TABLE public.bench_meta (rows int8 NOT NULL, version text NOT NULL)")
            .await?;
        sqlx::query("INSERT INTO public.bench_meta VALUES ($1, $2)")
            .bind(rows)
            .bind(&eu_tag)
            .execute(&mut eu)
            .await?;
        eu.close().await?;
        log(format!("built {EU_DB} in {:.0?}", started.elapsed()));
    }
    if !us_ok {
        log(format!(
            "building {US_DB} (a copy of {EU_DB}, then the planted differences)…"
        ));
        let started = Instant::now();
        admin
            .execute(format!("DROP DATABASE IF EXISTS {US_DB} WITH (FORCE)").as_str())
            .await?;
        admin
            .execute(format!("CREATE DATABASE {US_DB} TEMPLATE {EU_DB}").as_str())
            .await?;
        let mut us = PgConnection::connect(&server.direct(US_DB)).await?;
        for ((tenant, id), kind, eu_id) in &plants {
            let sql = match kind {
                Plant::Amount => {
                    "UPDATE public.audit SET amount = amount + 1 WHERE tenant = $1 AND id = $2"
                }
                Plant::NullVsEmpty => {
                    "UPDATE public.audit SET note = '' WHERE tenant = $1 AND id = $2 AND note IS NULL"
                }
                Plant::Millis => {
                    "UPDATE public.audit SET at = date_trunc('milliseconds', at) \
                     WHERE tenant = $1 AND id = $2 AND at <> date_trunc('milliseconds', at)"
                }
                Plant::Deleted => "DELETE FROM public.audit WHERE tenant = $1 AND id = $2",
                // A copy of the EU row under another tenant: a key EU lacks.
                Plant::Extra => {
                    "INSERT INTO public.audit \
                     SELECT $1, id, note, amount, at, region, active, score \
                     FROM public.audit WHERE tenant = 't' || ($2 % 500) AND id = $2"
                }
            };
            let done = sqlx::query(sql)
                .bind(tenant)
                .bind(eu_id)
                .execute(&mut us)
                .await?;
            if done.rows_affected() != 1 {
                bail!(
                    "planting {kind:?} at ({tenant}, {id}) touched {} rows",
                    done.rows_affected()
                );
            }
        }
        us.execute("VACUUM (ANALYZE) public.audit").await?;
        sqlx::query("UPDATE public.bench_meta SET version = $1")
            .bind(&us_tag)
            .execute(&mut us)
            .await?;
        us.close().await?;
        log(format!("built {US_DB} in {:.0?}", started.elapsed()));
    }
    admin.close().await.ok();
    Ok(plants)
}

/// The 1-minute load average (the machine may be shared).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// `VmHWM` (peak resident set) of this process, KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets `VmHWM` to the current resident set (Linux ≥ 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn key_of(diff: &Diff) -> Result<Key> {
    let value = |name: &str| {
        diff.key
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| anyhow!("a diff without `{name}`: {:?}", diff.key))
    };
    let tenant = match value("tenant")? {
        serde_json::Value::String(s) => s,
        other => bail!("tenant {other}"),
    };
    let id = match value("id")? {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| anyhow!("id {n}"))?,
        serde_json::Value::String(s) => s.parse()?,
        other => bail!("id {other}"),
    };
    Ok((tenant, id))
}

async fn run_patrol(
    server: &Server,
    case: &'static str,
    (left_db, right_db): (&str, &str),
) -> Result<Run> {
    let left_proxy = Proxy::start(&server.upstream).await?;
    let right_proxy = Proxy::start(&server.upstream).await?;
    let spec = CompareSpec {
        key: KEY.iter().map(|k| k.to_string()).collect(),
        columns: None,
    };
    let (left_url, right_url) = (
        server.via(&left_proxy, left_db),
        server.via(&right_proxy, right_db),
    );
    let rss_reset = reset_peak_rss();
    let started = Instant::now();
    let (left, right) = tokio::try_join!(
        postgres::open(&left_url, "public", "audit", left_db),
        postgres::open(&right_url, "public", "audit", right_db),
    )
    .map_err(|e| anyhow!(e))?;
    let (diffs, summary, stats) = bisect::compare(&left, &right, &spec, None, Tuning::default())
        .await
        .map_err(|e| anyhow!(e))?;
    let wall = started.elapsed();
    let peak = if rss_reset { peak_rss_kib() } else { None };
    left.pool.close().await;
    right.pool.close().await;
    let mut found = BTreeMap::new();
    for diff in &diffs {
        let seen = match (diff.reason, diff.side) {
            (Reason::Mismatch, _) => Seen::Changed,
            (Reason::Missing, Some(Side::Right)) => Seen::LeftOnly,
            (Reason::Missing, Some(Side::Left)) => Seen::RightOnly,
            other => bail!("patrol: unexpected diff {other:?} at {:?}", diff.key),
        };
        if found.insert(key_of(diff)?, seen).is_some() {
            bail!("patrol: two diffs for {:?}", diff.key);
        }
    }
    if summary.differences() != diffs.len() {
        bail!(
            "patrol: summary counts {} differences, {} diffs listed",
            summary.differences(),
            diffs.len()
        );
    }
    let (from_left, to_left) = left_proxy.bytes();
    let (from_right, to_right) = right_proxy.bytes();
    Ok(Run {
        tool: "patrol".into(),
        case,
        wall,
        from_left,
        from_right,
        to_left,
        to_right,
        connections: left_proxy.connections.load(Ordering::Relaxed)
            + right_proxy.connections.load(Ordering::Relaxed),
        fetched: Some((stats.fetched_left, stats.fetched_right)),
        stats: Some(stats),
        peak_rss_kib: peak,
        found,
        lines: diffs.len(),
        load: load(),
    })
}

async fn run_reladiff(
    reladiff: &Path,
    server: &Server,
    case: &'static str,
    (left_db, right_db): (&str, &str),
    threads: u32,
) -> Result<Run> {
    let left_proxy = Proxy::start(&server.upstream).await?;
    let right_proxy = Proxy::start(&server.upstream).await?;
    let mut args: Vec<String> = vec![
        server.via(&left_proxy, left_db),
        "public.audit".into(),
        server.via(&right_proxy, right_db),
        "public.audit".into(),
    ];
    for key in KEY {
        args.extend(["-k".into(), key.into()]);
    }
    for column in COLUMNS {
        args.extend(["-c".into(), column.into()]);
    }
    args.extend([
        "--skip-sort-results".into(),
        "--json".into(),
        "-j".into(),
        threads.to_string(),
    ]);
    // GNU time reports the child's peak resident set, if installed.
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new()?;
    let mut command = if time.exists() {
        let mut c = tokio::process::Command::new(time);
        c.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(rss_file.path())
            .arg(reladiff);
        c
    } else {
        tokio::process::Command::new(reladiff)
    };
    command
        .args(&args)
        .env("COLUMNS", "100000")
        .env("PYTHONHASHSEED", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = command.output().await.context("cannot run reladiff")?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stderr.contains("ERROR") || stderr.contains("Traceback") {
        bail!(
            "reladiff -j {threads} ({case}) failed ({}):\n{stderr}",
            output.status
        );
    }
    if !stderr.trim().is_empty() {
        log(format!("reladiff -j {threads} stderr: {}", stderr.trim()));
    }
    let mut signs: BTreeMap<Key, (bool, bool)> = BTreeMap::new();
    let mut lines = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let (sign, values): (String, Vec<serde_json::Value>) = serde_json::from_str(line)
            .with_context(|| format!("reladiff printed an unexpected line: {line}"))?;
        let text = |at: usize| -> Result<String> {
            match values.get(at) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(other) => Ok(other.to_string()),
                None => bail!("reladiff line without a key: {line}"),
            }
        };
        let key = (text(0)?, text(1)?.parse::<i64>()?);
        let entry = signs.entry(key).or_default();
        match sign.as_str() {
            "-" => entry.0 = true,
            "+" => entry.1 = true,
            _ => bail!("reladiff line with sign {sign}: {line}"),
        }
        lines += 1;
    }
    let found = signs
        .into_iter()
        .map(|(key, minus_plus)| {
            let seen = match minus_plus {
                (true, true) => Seen::Changed,
                (true, false) => Seen::LeftOnly,
                _ => Seen::RightOnly,
            };
            (key, seen)
        })
        .collect();
    let peak_rss_kib = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
    let (from_left, to_left) = left_proxy.bytes();
    let (from_right, to_right) = right_proxy.bytes();
    Ok(Run {
        tool: format!("reladiff -j {threads}"),
        case,
        wall,
        from_left,
        from_right,
        to_left,
        to_right,
        connections: left_proxy.connections.load(Ordering::Relaxed)
            + right_proxy.connections.load(Ordering::Relaxed),
        fetched: None,
        stats: None,
        peak_rss_kib,
        found,
        lines,
        load: load(),
    })
}

/// Differences between what a run found and what was expected.
fn check(run: &Run, expected: &BTreeMap<Key, Seen>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, seen) in expected {
        match run.found.get(key) {
            None => problems.push(format!(
                "{} ({}): missed {key:?} ({seen:?})",
                run.tool, run.case
            )),
            Some(got) if got != seen => problems.push(format!(
                "{} ({}): {key:?} reported as {got:?}, planted as {seen:?}",
                run.tool, run.case
            )),
            Some(_) => {}
        }
    }
    for (key, got) in &run.found {
        if !expected.contains_key(key) {
            problems.push(format!(
                "{} ({}): reported {key:?} ({got:?}), not planted",
                run.tool, run.case
            ));
        }
    }
    problems
}

fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 10e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 10e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (at, c) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The reladiff executable: `RELADIFF`, else a venv in `target/`.
async fn find_reladiff() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RELADIFF") {
        return Ok(PathBuf::from(path));
    }
    // target/release/deps/pg_bisect-… → target/
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let venv = target.join("reladiff-venv");
    let reladiff = venv.join("bin/reladiff");
    if reladiff.exists() {
        return Ok(reladiff);
    }
    log(format!(
        "installing reladiff 0.6.0 into {}…",
        venv.display()
    ));
    let status = tokio::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .await
        .context("python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = tokio::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "reladiff[postgresql]==0.6.0"])
        .status()
        .await
        .context("pip install reladiff")?;
    if !status.success() {
        bail!("pip install 'reladiff[postgresql]==0.6.0' failed (or set RELADIFF)");
    }
    Ok(reladiff)
}

async fn bench() -> Result<Vec<String>> {
    let url = std::env::var("PATROL_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("PATROL_TEST_POSTGRES_URL"))
        .map_err(|_| {
            anyhow!(
                "set PATROL_BENCH_POSTGRES_URL (or PATROL_TEST_POSTGRES_URL) to the PostgreSQL \
                 server, e.g. postgres://postgres@127.0.0.1:55432/postgres"
            )
        })?;
    let server = Server::parse(&url)?;
    let rows: i64 = match std::env::var("PATROL_BENCH_ROWS") {
        Ok(text) => text
            .replace('_', "")
            .parse()
            .context("PATROL_BENCH_ROWS is not a number")?,
        Err(_) => 10_000_000,
    };
    if rows < 100_000 {
        bail!("PATROL_BENCH_ROWS must be at least 100000 (one planted difference per 1%)");
    }
    let threads: Vec<u32> = std::env::var("PATROL_BENCH_RELADIFF_THREADS")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .map(|t| t.trim().parse())
        .collect::<Result<_, _>>()
        .context("PATROL_BENCH_RELADIFF_THREADS: numbers separated by commas")?;
    let reladiff = find_reladiff().await?;
    let version = tokio::process::Command::new(&reladiff)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("cannot run {}", reladiff.display()))?;
    let reladiff_version = String::from_utf8_lossy(&version.stdout).trim().to_string();

    let plants = prepare(&server, rows).await?;
    let expected: BTreeMap<Key, Seen> = plants
        .iter()
        .map(|(key, kind, _)| (key.clone(), kind.seen()))
        .collect();
    if expected.len() != PLANTED {
        bail!("the planted keys are not distinct");
    }
    let ids: HashSet<i64> = plants.iter().map(|(_, _, id)| *id).collect();
    if ids.len() != PLANTED {
        bail!("two planted differences share an id");
    }
    let mut conn = PgConnection::connect(&server.direct(EU_DB)).await?;
    let pg_version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await.ok();

    // Warm the OS cache the same way for everyone: one pass over each
    // table and its key index.
    for db in [EU_DB, US_DB] {
        let started = Instant::now();
        let mut conn = PgConnection::connect(&server.direct(db)).await?;
        conn.execute("SET enable_seqscan = off").await?;
        conn.execute("SELECT count(*) FROM public.audit WHERE tenant >= ''")
            .await?;
        conn.execute("RESET enable_seqscan").await?;
        conn.execute("SELECT count(*), sum(length(note)) FROM public.audit")
            .await?;
        conn.close().await.ok();
        log(format!("warmed {db} in {:.1?}", started.elapsed()));
    }

    let mut runs = Vec::new();
    let mut problems = Vec::new();
    let none = BTreeMap::new();
    for (case, dbs, expect) in [
        ("100 differences", (EU_DB, US_DB), &expected),
        ("identical", (EU_DB, EU_DB), &none),
    ] {
        log(format!("{case}: patrol…"));
        let run = run_patrol(&server, case, dbs).await?;
        log(format!(
            "{case}: patrol {:.2} s, {} diffs",
            run.wall.as_secs_f64(),
            run.lines
        ));
        problems.extend(check(&run, expect));
        runs.push(run);
        for &j in &threads {
            log(format!("{case}: reladiff -j {j}…"));
            let run = run_reladiff(&reladiff, &server, case, dbs, j).await?;
            log(format!(
                "{case}: reladiff -j {j} {:.2} s, {} lines",
                run.wall.as_secs_f64(),
                run.lines
            ));
            problems.extend(check(&run, expect));
            runs.push(run);
        }
    }

    println!();
    println!(
        "pg_bisect: {} rows × 8 columns, {} planted differences",
        thousands(rows as u64),
        PLANTED
    );
    println!("{}", pg_version);
    println!("{reladiff_version} ({})", reladiff.display());
    println!();
    println!("| tool | case | wall s | bytes from left DB | bytes from right DB | bytes to DBs | connections | rows patrol fetched (l / r) | levels | peak RSS | keys found | load |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let fetched = run.fetched.map_or("–".to_string(), |(l, r)| {
            format!("{} / {}", thousands(l as u64), thousands(r as u64))
        });
        let levels = run
            .stats
            .as_ref()
            .map_or("–".to_string(), |s| s.levels.len().to_string());
        let rss = run.peak_rss_kib.map_or("–".to_string(), |k| {
            format!("{:.0} MB", k as f64 / 1024.0)
        });
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.tool,
            run.case,
            run.wall.as_secs_f64(),
            bytes(run.from_left),
            bytes(run.from_right),
            bytes(run.to_left + run.to_right),
            run.connections,
            fetched,
            levels,
            rss,
            run.found.len(),
            run.load
        );
    }
    println!();
    for run in &runs {
        println!(
            "{} ({}): {} B from left, {} B from right, {} B sent",
            run.tool,
            run.case,
            thousands(run.from_left),
            thousands(run.from_right),
            thousands(run.to_left + run.to_right)
        );
        if let Some(stats) = &run.stats {
            for (at, level) in stats.levels.iter().enumerate() {
                println!(
                    "  level {}: {} buckets, groups {} / {}, {} differing holding {} rows",
                    at + 1,
                    thousands(level.buckets as u64),
                    level.groups_left,
                    level.groups_right,
                    level.differing,
                    thousands(level.rows_differing as u64)
                );
            }
        }
    }
    println!();
    for case in ["100 differences", "identical"] {
        let Some(patrol) = runs.iter().find(|r| r.case == case && r.tool == "patrol") else {
            continue;
        };
        for other in runs.iter().filter(|r| r.case == case && r.tool != "patrol") {
            println!(
                "{case}: patrol / {} = {:.2}× wall time, {:.2}× bytes from the databases",
                other.tool,
                patrol.wall.as_secs_f64() / other.wall.as_secs_f64(),
                (patrol.from_left + patrol.from_right) as f64
                    / (other.from_left + other.from_right).max(1) as f64
            );
        }
    }
    Ok(problems)
}

#[tokio::main]
async fn main() -> ExitCode {
    match bench().await {
        Ok(problems) if problems.is_empty() => {
            println!("\nevery planted difference found by every tool, nothing else reported");
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            eprintln!("\nFAILED: {} disagreements:", problems.len());
            for problem in problems {
                eprintln!("  {problem}");
            }
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("pg_bisect failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
