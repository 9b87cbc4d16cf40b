//! Runbooks: `runbooks/<name>.md`, what on-call does for an alert. Alerts
//! carry a link (when a base URL is configured) and the first lines, so
//! the first steps are on the page itself.

use std::path::{Path, PathBuf};

use super::notify::RunbookView;

/// How much of a runbook travels with an alert.
const EXCERPT_LINES: usize = 8;
const EXCERPT_CHARS: usize = 600;

#[derive(Debug, Clone)]
pub struct Runbooks {
    dir: PathBuf,
    base_url: Option<String>,
}

impl Runbooks {
    pub fn new(dir: &Path, base_url: Option<&str>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            base_url: base_url.map(str::to_string),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.md"))
    }

    /// The runbook `name`. A missing file gives no link (it would lead
    /// on-call to a 404) and an excerpt saying the runbook is missing: the
    /// page must go out anyway.
    pub fn view(&self, name: &str) -> RunbookView {
        let (url, excerpt) = match std::fs::read_to_string(self.path(name)) {
            Ok(text) => (
                self.base_url
                    .as_ref()
                    .map(|base| format!("{base}/{name}.md")),
                excerpt(&text),
            ),
            Err(_) => (
                None,
                format!("(runbook {name}.md not found in {})", self.dir.display()),
            ),
        };
        RunbookView {
            name: name.to_string(),
            url,
            excerpt,
        }
    }
}

/// The first lines of a runbook after its title, blank lines dropped.
fn excerpt(text: &str) -> String {
    let mut lines = text
        .lines()
        .map(str::trim_end)
        .skip_while(|line| line.trim().is_empty())
        .peekable();
    if lines.peek().is_some_and(|line| line.starts_with("# ")) {
        lines.next();
    }
    let kept: Vec<&str> = lines
        .filter(|line| !line.trim().is_empty())
        .take(EXCERPT_LINES)
        .collect();
    let mut excerpt = kept.join("\n");
    if excerpt.chars().count() > EXCERPT_CHARS {
        excerpt = excerpt.chars().take(EXCERPT_CHARS).collect::<String>() + "…";
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_link_and_quote_the_first_lines_after_the_title() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("missing-rekor.md"),
            "# Missing Rekor entry\n\nA signed bundle has no transparency log entry.\n\n1. Check Rekor status.\n",
        )
        .unwrap();
        let runbooks = Runbooks::new(dir.path(), Some("https://ops.example/runbooks"));
        let view = runbooks.view("missing-rekor");
        assert_eq!(
            view.url.as_deref(),
            Some("https://ops.example/runbooks/missing-rekor.md")
        );
        assert_eq!(
            view.excerpt,
            "A signed bundle has no transparency log entry.\n1. Check Rekor status."
        );
        // Issue 18: a runbook that does not exist got a link that 404s.
        let missing = runbooks.view("nope");
        assert!(missing.excerpt.contains("not found"), "{missing:?}");
        assert_eq!(missing.url, None);
    }
}
