//! What a program tells patrol on its stdout: JSON lines, one per finding
//! or checkpoint.
//!
//! ```text
//! {"finding": {"key": "disk/full/sda1", "severity": "error", "title": "sda1 is 97% full"}}
//! {"findings_partial": true}
//! {"checkpoint": {"done": 1200}}
//! ```
//! Any other line is ordinary output. A line that starts like a finding
//! but does not parse as one is counted and reported (line number and
//! reason), and the run's findings are then partial: no alert is resolved
//! on the strength of an output patrol could not fully read. A checkpoint
//! line hands over its value (any JSON) to be committed at once; a
//! malformed one is counted and reported the same way, and leaves the
//! findings whole.

use patrol_job_api::Finding;
use serde::Deserialize;

/// More findings than this from one run are counted, not kept.
pub const MAX_FINDINGS: usize = 10_000;
/// Longer lines are not findings (and are not buffered beyond this).
pub const MAX_LINE: usize = 1024 * 1024;
/// How many malformed lines are described; the rest are only counted.
const MAX_PROBLEMS_KEPT: usize = 20;

/// Which kinds of line are read (the rest is ordinary output).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub findings: bool,
    pub checkpoints: bool,
}

#[derive(Debug, Default)]
pub struct StdoutLines {
    reading: Reading,
    pending: Vec<u8>,
    /// The current line outgrew `MAX_LINE`; skip to its end.
    overlong: bool,
    /// The first bytes of an overlong line: enough to tell a finding.
    overlong_start: Vec<u8>,
    line_number: usize,
    pub findings: Vec<Finding>,
    pub partial: bool,
    pub malformed: usize,
    pub dropped_over_limit: usize,
    pub problems: Vec<String>,
    /// Checkpoint values read and not yet taken ([`take_checkpoints`](Self::take_checkpoints)).
    checkpoints: Vec<serde_json::Value>,
    pub malformed_checkpoints: usize,
    pub checkpoint_problems: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingLine {
    finding: Finding,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialLine {
    findings_partial: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: serde_json::Value,
}

impl StdoutLines {
    pub fn new(reading: Reading) -> Self {
        Self {
            reading,
            ..Self::default()
        }
    }

    /// The checkpoint values read since the last call, oldest first.
    pub fn take_checkpoints(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.checkpoints)
    }

    /// Feeds a chunk of stdout.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.extend(&bytes[..end]);
            self.finish_line();
            bytes = &bytes[end + 1..];
        }
        self.extend(bytes);
    }

    /// Call at end of stream: a last line without a newline still counts.
    pub fn finish(&mut self) {
        if !self.pending.is_empty() || self.overlong {
            self.finish_line();
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.overlong {
            return;
        }
        if self.pending.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.pending
                .extend_from_slice(&bytes[..bytes.len().min(64)]);
            self.pending.truncate(64);
            self.overlong_start = std::mem::take(&mut self.pending);
            return;
        }
        self.pending.extend_from_slice(bytes);
    }

    fn finish_line(&mut self) {
        self.line_number += 1;
        let line = std::mem::take(&mut self.pending);
        if std::mem::take(&mut self.overlong) {
            // A finding too long to read still counts: dropping it quietly
            // would let its alert resolve.
            let start = std::mem::take(&mut self.overlong_start);
            let compact: String = String::from_utf8_lossy(&start)
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            if self.reading.findings && compact.starts_with("{\"finding") {
                self.malformed(format!("longer than {MAX_LINE} bytes"));
            } else if self.reading.checkpoints && compact.starts_with("{\"checkpoint\"") {
                self.malformed_checkpoint(format!("longer than {MAX_LINE} bytes"));
            }
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        let compact: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(24)
            .collect();
        if self.reading.checkpoints && compact.starts_with("{\"checkpoint\"") {
            match serde_json::from_str::<CheckpointLine>(text) {
                Ok(line) => self.checkpoints.push(line.checkpoint),
                Err(err) => self.malformed_checkpoint(format!("checkpoint: {err}")),
            }
        } else if self.reading.findings {
            self.finding_line(text, &compact);
        }
    }

    fn finding_line(&mut self, text: &str, compact: &str) {
        if compact.starts_with("{\"findings_partial\"") {
            match serde_json::from_str::<PartialLine>(text) {
                Ok(line) => self.partial |= line.findings_partial,
                Err(err) => self.malformed(format!("findings_partial: {err}")),
            }
        } else if compact.starts_with("{\"finding\"") {
            match serde_json::from_str::<FindingLine>(text)
                .map_err(|err| err.to_string())
                .and_then(|line| line.finding.check().map(|()| line.finding))
            {
                Ok(finding) if self.findings.len() < MAX_FINDINGS => self.findings.push(finding),
                Ok(_) => {
                    self.dropped_over_limit += 1;
                    self.partial = true;
                }
                Err(err) => self.malformed(err),
            }
        }
    }

    fn malformed_checkpoint(&mut self, reason: String) {
        self.malformed_checkpoints += 1;
        if self.checkpoint_problems.len() < MAX_PROBLEMS_KEPT {
            self.checkpoint_problems
                .push(format!("stdout line {}: {reason}", self.line_number));
        }
    }

    fn malformed(&mut self, reason: String) {
        self.malformed += 1;
        self.partial = true;
        if self.problems.len() < MAX_PROBLEMS_KEPT {
            self.problems
                .push(format!("stdout line {}: {reason}", self.line_number));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Reading = Reading {
        findings: true,
        checkpoints: true,
    };

    #[test]
    fn finding_lines_are_read_across_chunks_and_others_ignored() {
        let mut lines = StdoutLines::new(BOTH);
        lines.push(b"starting check\n{\"finding\": {\"key\": \"a/1\", \"sev");
        lines.push(b"erity\": \"error\", \"title\": \"A is broken\"}}\n{\"other\": 1}\n");
        lines.push(b"{\"finding\": {\"key\": \"a/2\", \"severity\": \"info\", \"title\": \"B\"}}");
        lines.finish();
        let keys: Vec<_> = lines.findings.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["a/1", "a/2"]);
        assert!(!lines.partial);
        assert_eq!(lines.malformed, 0);
    }

    #[test]
    fn malformed_findings_are_counted_located_and_make_the_run_partial() {
        let mut lines = StdoutLines::new(BOTH);
        lines.push(
            b"ok\n{\"finding\": {\"key\": \"a\", \"severity\": \"loud\", \"title\": \"x\"}}\n",
        );
        lines.push(b"{\"finding\": {\"key\": \"\", \"severity\": \"info\", \"title\": \"x\"}}\n");
        lines.push(b"{\"finding\": \n");
        lines.finish();
        assert!(lines.findings.is_empty());
        assert_eq!(lines.malformed, 3);
        assert!(lines.partial);
        assert!(
            lines.problems[0].starts_with("stdout line 2: unknown variant `loud`"),
            "{:?}",
            lines.problems
        );
        assert!(lines.problems[1].contains("line 3") && lines.problems[1].contains("key"));
    }

    #[test]
    fn jobs_can_declare_partial_results_and_overlong_lines_are_skipped() {
        let mut lines = StdoutLines::new(BOTH);
        lines.push(b"{\"findings_partial\": true}\n");
        let mut long = b"{\"finding\": \"".to_vec();
        long.resize(MAX_LINE + 10, b'x');
        lines.push(&long);
        lines.push(
            b"\n{\"finding\": {\"key\": \"k\", \"severity\": \"critical\", \"title\": \"t\"}}\n",
        );
        lines.finish();
        assert!(lines.partial);
        assert_eq!(lines.findings.len(), 1);
        assert_eq!(lines.malformed, 1, "an overlong finding is counted");
        assert!(
            lines.problems[0].contains("longer than"),
            "{:?}",
            lines.problems
        );

        // An overlong line of ordinary output is just output.
        let mut plain = StdoutLines::new(BOTH);
        plain.push(&vec![b'x'; MAX_LINE + 10]);
        plain.push(b"\n");
        plain.finish();
        assert_eq!((plain.malformed, plain.partial), (0, false));
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use super::*;

    #[test]
    fn checkpoint_lines_hand_over_their_values_in_order() {
        let mut lines = StdoutLines::new(Reading {
            findings: true,
            checkpoints: true,
        });
        lines.push(b"working\n{\"checkpoint\": 1}\n{\"checkpoint\": {\"done\": [1, 2]}");
        assert_eq!(lines.take_checkpoints(), [serde_json::json!(1)]);
        lines.push(b"}\n{\"checkpoint\": null}\n");
        lines.finish();
        assert_eq!(
            lines.take_checkpoints(),
            [serde_json::json!({"done": [1, 2]}), serde_json::Value::Null]
        );
        assert!(lines.take_checkpoints().is_empty());
        assert_eq!(lines.malformed_checkpoints, 0);
    }

    #[test]
    fn malformed_checkpoints_are_counted_located_and_leave_findings_whole() {
        let mut lines = StdoutLines::new(Reading {
            findings: true,
            checkpoints: true,
        });
        lines.push(b"{\"checkpoint\": 1, \"extra\": 2}\n{\"checkpoint\": \n");
        let mut long = b"{\"checkpoint\": \"".to_vec();
        long.resize(MAX_LINE + 10, b'x');
        lines.push(&long);
        lines.push(b"\"}\n{\"checkpoint\": 3}\n");
        lines.finish();
        assert_eq!(lines.take_checkpoints(), [serde_json::json!(3)]);
        assert_eq!(lines.malformed_checkpoints, 3);
        assert!(!lines.partial, "checkpoints say nothing about findings");
        assert!(
            lines.checkpoint_problems[0]
                .starts_with("stdout line 1: checkpoint: unknown field `extra`"),
            "{:?}",
            lines.checkpoint_problems
        );
        assert!(lines.checkpoint_problems[2].contains("line 3: longer than"));
    }

    #[test]
    fn each_convention_can_be_turned_off_alone() {
        let text = b"{\"checkpoint\": 1}\n{\"finding\": {\"key\": \"k\", \"severity\": \"info\", \"title\": \"t\"}}\n";
        let mut only_findings = StdoutLines::new(Reading {
            findings: true,
            checkpoints: false,
        });
        only_findings.push(text);
        only_findings.finish();
        assert!(only_findings.take_checkpoints().is_empty());
        assert_eq!(only_findings.findings.len(), 1);
        let mut only_checkpoints = StdoutLines::new(Reading {
            findings: false,
            checkpoints: true,
        });
        only_checkpoints.push(text);
        only_checkpoints.finish();
        assert_eq!(only_checkpoints.take_checkpoints().len(), 1);
        assert!(only_checkpoints.findings.is_empty());
    }
}
