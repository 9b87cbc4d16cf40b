use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use patrol_job_api::secret::SecretRef;
use patrol_job_api::units::{ByteSize, HumanDuration};
use patrol_job_api::{ParamDoc, ParamError};
use serde::Deserialize;

/// patrol's variables a program gets unless `clear_env` is set: what a
/// program needs to find tools, a home, its language and time zone. Never
/// the rest: patrol's environment holds notifier and database credentials.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// `params` of a `command` schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// Program to execute (looked up in PATH). Exclusive with `shell`.
    pub program: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// A script run with `/bin/sh -c`. Exclusive with `program`.
    pub shell: Option<String>,
    /// Variables set for the program, as written (not secrets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of patrol's own variables passed on as they are. Nothing else
    /// of patrol's environment reaches the program (see [`BASE_ENV`]).
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Variables whose value is a secret (`env:NAME` or `file:PATH`),
    /// resolved when the schedule is built and scrubbed from everything
    /// the run records.
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// Not even the [`BASE_ENV`] variables: only `env`, `pass_env`,
    /// `secret_env` and patrol's `PATROL_*` run variables.
    #[serde(default)]
    pub clear_env: bool,
    pub workdir: Option<PathBuf>,
    /// Per stream; head and tail are kept, the middle is cut visibly.
    #[serde(default = "default_output_limit")]
    pub output_limit: ByteSize,
    /// Between SIGTERM and SIGKILL when the run is cancelled.
    #[serde(default = "default_kill_grace")]
    pub kill_grace: HumanDuration,
    /// Read `{"finding": {...}}` lines on stdout as findings.
    #[serde(default = "default_true")]
    pub findings: bool,
    /// Commit `{"checkpoint": VALUE}` lines on stdout to the schedule's
    /// state and hand the last one to the next run in `PATROL_CHECKPOINT`.
    #[serde(default = "default_true")]
    pub checkpoints: bool,
}

fn default_true() -> bool {
    true
}

fn default_output_limit() -> ByteSize {
    ByteSize(64 * 1024)
}

fn default_kill_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

impl CommandParams {
    pub fn check(&self) -> Result<(), Vec<ParamError>> {
        let mut errors = Vec::new();
        match (&self.program, &self.shell) {
            (None, None) => errors.push(ParamError::new(
                "program",
                "missing: set `program` (with `args`) or `shell`",
            )),
            (Some(_), Some(_)) => errors.push(ParamError::new(
                "shell",
                "`program` and `shell` are exclusive; keep one",
            )),
            (Some(program), None) if program.trim().is_empty() => {
                errors.push(ParamError::new("program", "must not be empty"));
            }
            (None, Some(_)) if !self.args.is_empty() => errors.push(ParamError::new(
                "args",
                "`args` goes with `program`; put arguments in the `shell` script",
            )),
            _ => {}
        }
        let names = (self.env.keys().map(|name| ("env", name)))
            .chain(self.secret_env.keys().map(|name| ("secret_env", name)));
        for (field, name) in names {
            if !is_variable_name(name) {
                errors.push(ParamError::new(
                    format!("{field}.{name}"),
                    "not a valid environment variable name",
                ));
            }
        }
        for (at, name) in self.pass_env.iter().enumerate() {
            if !is_variable_name(name) {
                errors.push(ParamError::new(
                    format!("pass_env[{at}]"),
                    "not a valid environment variable name",
                ));
            }
        }
        for name in self.secret_env.keys() {
            if self.env.contains_key(name) || self.pass_env.contains(name) {
                errors.push(ParamError::new(
                    format!("secret_env.{name}"),
                    "also set by `env` or `pass_env`; keep one",
                ));
            }
        }
        if self.output_limit.0 == 0 {
            errors.push(ParamError::new("output_limit", "must be at least 1 byte"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The argv to execute; `check` must have passed.
    pub fn argv(&self) -> Vec<String> {
        match (&self.program, &self.shell) {
            (Some(program), _) => std::iter::once(program.clone())
                .chain(self.args.iter().cloned())
                .collect(),
            (None, Some(script)) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
            (None, None) => Vec::new(),
        }
    }
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

pub fn docs() -> Vec<ParamDoc> {
    vec![
        ParamDoc {
            name: "program",
            type_name: "string",
            required: false,
            default: None,
            description: "program to run (PATH lookup); this or `shell`",
        },
        ParamDoc {
            name: "args",
            type_name: "list of strings",
            required: false,
            default: Some("[]"),
            description: "arguments for `program`",
        },
        ParamDoc {
            name: "shell",
            type_name: "string",
            required: false,
            default: None,
            description: "script run with /bin/sh -c; this or `program`",
        },
        ParamDoc {
            name: "env",
            type_name: "map",
            required: false,
            default: Some("{}"),
            description: "variables set for the program (plain values, not secrets)",
        },
        ParamDoc {
            name: "pass_env",
            type_name: "list of strings",
            required: false,
            default: Some("[]"),
            description: "names of patrol's own variables passed on; no other of patrol's variables reach the program but PATH, HOME, LANG, LC_ALL, TZ, TMPDIR",
        },
        ParamDoc {
            name: "secret_env",
            type_name: "map of secrets",
            required: false,
            default: Some("{}"),
            description: "variables whose value is a secret, `env:NAME` or `file:PATH`; scrubbed from output, errors, findings and logs",
        },
        ParamDoc {
            name: "clear_env",
            type_name: "bool",
            required: false,
            default: Some("false"),
            description: "not even PATH, HOME, LANG, LC_ALL, TZ, TMPDIR: only env, pass_env, secret_env and PATROL_*",
        },
        ParamDoc {
            name: "workdir",
            type_name: "path",
            required: false,
            default: None,
            description: "working directory",
        },
        ParamDoc {
            name: "output_limit",
            type_name: "size",
            required: false,
            default: Some("64KiB"),
            description: "bytes kept per stream (head and tail)",
        },
        ParamDoc {
            name: "kill_grace",
            type_name: "duration",
            required: false,
            default: Some("5s"),
            description: "SIGTERM→SIGKILL delay on cancel",
        },
        ParamDoc {
            name: "findings",
            type_name: "bool",
            required: false,
            default: Some("true"),
            description:
                "read {\"finding\": {...}} JSON lines on stdout as findings (see docs/alerting.md)",
        },
        ParamDoc {
            name: "checkpoints",
            type_name: "bool",
            required: false,
            default: Some("true"),
            description:
                "commit {\"checkpoint\": VALUE} lines on stdout at once; the next run gets the last in PATROL_CHECKPOINT",
        },
    ]
}
