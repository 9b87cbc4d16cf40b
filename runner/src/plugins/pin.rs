//! `patrol plugins pin PATH`: trust one build of a plugin by writing its
//! sha256 into patrol.yaml (creating the file, adding the entry, or
//! updating the entry with the same path). The edit is textual, so the
//! rest of the file (comments included) stays as written; the result is
//! parsed again and refused if it does not say what was meant.

use std::path::{Path, PathBuf};

use patrol_job_api::yaml_lines::LineIndex;

/// Replaces `path` with `text` so that a reader (a running `patrol serve`
/// reloading it) or a crash mid-write sees the old file or the new one,
/// never half of one: a sibling temporary file, synced, then renamed over
/// it, keeping the old file's permissions.
pub fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map_or_else(
        || "patrol.yaml".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    let temp = dir.join(format!(".{name}.pin-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        if let Ok(metadata) = std::fs::metadata(path) {
            file.set_permissions(metadata.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// What `pin` did to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    Created,
    Added,
    Updated { previous: String },
    Unchanged,
}

/// The new text of `config` (`None`: no file yet) with `path` pinned to
/// `sha256`. A new entry, or one without read paths, gets `read_paths`
/// (when any are given); an entry with read paths keeps its own.
pub fn pinned_text(
    config: Option<&str>,
    path: &str,
    sha256: &str,
    read_paths: &[&str],
) -> Result<(String, Pinned), String> {
    // JSON strings are YAML flow scalars: any path stays one value.
    let quoted: Vec<String> = read_paths
        .iter()
        .map(|path| serde_json::Value::from(*path).to_string())
        .collect();
    let read_paths_line = format!("read_paths: [{}]", quoted.join(", "));
    let item = |indent: &str| {
        let mut item = format!("{indent}- path: {path}\n{indent}  sha256: {sha256}\n");
        if !read_paths.is_empty() {
            item.push_str(&format!("{indent}  {read_paths_line}\n"));
        }
        item
    };
    let Some(text) = config.filter(|text| !text.trim().is_empty()) else {
        let text = format!(
            "# Plugin libraries this runner may load, each pinned to one build\n# (`patrol plugins pin PATH`; docs/plugins.md).\nplugins:\n{}",
            item("  ")
        );
        return Ok((text, Pinned::Created));
    };
    let value: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|err| format!("patrol.yaml is not valid YAML: {err}"))?;
    let entries = value
        .get("plugins")
        .and_then(serde_norway::Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let index = LineIndex::build(text);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let position = entries
        .iter()
        .position(|entry| entry.get("path").and_then(serde_norway::Value::as_str) == Some(path));
    let outcome = if let Some(position) = position {
        let previous = entries[position]
            .get("sha256")
            .and_then(serde_norway::Value::as_str)
            .unwrap_or_default()
            .to_string();
        // An entry pinned before read paths existed gets them; one that
        // has some keeps them.
        let lacks_read_paths =
            !read_paths.is_empty() && entries[position].get("read_paths").is_none();
        if previous == sha256 && !lacks_read_paths {
            return Ok((text.to_string(), Pinned::Unchanged));
        }
        let (line, _) = index
            .locate(&format!("plugins[{position}].sha256"))
            .filter(|_| !previous.is_empty())
            .ok_or("the entry has no `sha256:` line to update; edit patrol.yaml by hand")?;
        let old = &lines[line - 1];
        let at = old
            .find("sha256:")
            .ok_or("the entry's `sha256:` is not on a line of its own; edit patrol.yaml by hand")?;
        let rest = &old[at + "sha256:".len()..];
        // A trailing comment stays, with the spaces before it.
        let comment = rest
            .find('#')
            .map(|hash| rest[rest[..hash].trim_end().len()..].to_string())
            .unwrap_or_default();
        let updated = format!("{}sha256: {sha256}{comment}", &old[..at]);
        lines[line - 1] = updated;
        if lacks_read_paths {
            lines.insert(line, format!("{}{read_paths_line}", " ".repeat(at)));
        }
        Pinned::Updated { previous }
    } else if let Some((line, _)) = index
        .locate("plugins")
        .filter(|_| value.get("plugins").is_some())
    {
        // After the `plugins:` line, indented like its first item.
        let indent = lines
            .iter()
            .skip(line)
            .find(|l| l.trim_start().starts_with('-'))
            .filter(|_| !entries.is_empty())
            .map(|l| l[..l.len() - l.trim_start().len()].to_string())
            .unwrap_or_else(|| "  ".to_string());
        if entries.is_empty() {
            // `plugins: []` or `plugins:` with nothing: rewrite the line.
            lines[line - 1] = "plugins:".to_string();
        }
        let new_item = item(&indent);
        let new_lines: Vec<String> = new_item.lines().map(str::to_string).collect();
        lines.splice(line..line, new_lines);
        Pinned::Added
    } else {
        lines.push("plugins:".to_string());
        lines.extend(item("  ").lines().map(str::to_string));
        Pinned::Added
    };
    let mut new_text = lines.join("\n");
    new_text.push('\n');
    // The edit must say exactly what was meant, or nothing is written.
    let check: serde_norway::Value = serde_norway::from_str(&new_text).map_err(|err| {
        format!("could not edit patrol.yaml safely ({err}); add the entry by hand")
    })?;
    let pinned = check
        .get("plugins")
        .and_then(serde_norway::Value::as_sequence)
        .is_some_and(|entries| {
            entries.iter().any(|entry| {
                entry.get("path").and_then(serde_norway::Value::as_str) == Some(path)
                    && entry.get("sha256").and_then(serde_norway::Value::as_str) == Some(sha256)
            })
        });
    if !pinned {
        return Err("could not edit patrol.yaml safely; add the entry by hand".into());
    }
    Ok((new_text, outcome))
}

/// The path as patrol.yaml should name it: relative to its folder when the
/// library is under it, else absolute.
pub fn path_for_config(library: &Path, config: &Path) -> PathBuf {
    let base = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (Ok(library_abs), Ok(base_abs)) =
        (std::fs::canonicalize(library), std::fs::canonicalize(base))
    else {
        return library.to_path_buf();
    };
    library_abs
        .strip_prefix(&base_abs)
        .map(Path::to_path_buf)
        .unwrap_or(library_abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_keeps_permissions_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("patrol.yaml");
        std::fs::write(&config, "old: 1\n").unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_replacing(&config, "new: 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "new: 2\n");
        let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["patrol.yaml"]);
        // A folder that cannot take the new file: the old one stays.
        let missing = dir.path().join("no-such-dir/patrol.yaml");
        assert!(write_replacing(&missing, "x").is_err());
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn creates_adds_and_updates_keeping_the_rest() {
        let (created, outcome) = pinned_text(None, "lib/a.so", A, &[]).unwrap();
        assert_eq!(outcome, Pinned::Created);
        let (updated, outcome) = pinned_text(Some(&created), "lib/a.so", B, &[]).unwrap();
        assert_eq!(outcome, Pinned::Updated { previous: A.into() });
        assert!(updated.contains(&format!("sha256: {B}")) && !updated.contains(A));
        assert_eq!(
            pinned_text(Some(&updated), "lib/a.so", B, &[]).unwrap().1,
            Pinned::Unchanged
        );

        let config = format!("database: sqlite://x.db # mine\nplugins:\n- path: lib/a.so\n  sha256: {A}  # old\nnode: n\n");
        let (text, outcome) = pinned_text(Some(&config), "lib/b.so", B, &[]).unwrap();
        assert_eq!(outcome, Pinned::Added);
        assert!(
            text.starts_with("database: sqlite://x.db # mine\nplugins:\n- path: lib/b.so\n"),
            "{text}"
        );
        assert!(text.ends_with("node: n\n"), "{text}");
        let (text, _) = pinned_text(Some(&text), "lib/a.so", B, &[]).unwrap();
        assert!(text.contains(&format!("  sha256: {B}  # old")), "{text}");

        let (text, outcome) = pinned_text(Some("node: n\n"), "a.so", A, &[]).unwrap();
        assert_eq!(outcome, Pinned::Added);
        assert_eq!(
            text,
            format!("node: n\nplugins:\n  - path: a.so\n    sha256: {A}\n")
        );
        let (text, _) = pinned_text(Some("plugins: []\nnode: n\n"), "a.so", A, &[]).unwrap();
        assert_eq!(
            text,
            format!("plugins:\n  - path: a.so\n    sha256: {A}\nnode: n\n")
        );
    }

    #[test]
    fn a_new_entry_gets_its_read_paths_and_an_update_keeps_them() {
        let (text, _) = pinned_text(None, "a.so", A, &["data/in", "it's here"]).unwrap();
        assert!(
            text.ends_with(&format!(
                "  - path: a.so\n    sha256: {A}\n    read_paths: [\"data/in\", \"it's here\"]\n"
            )),
            "{text}"
        );
        let (updated, _) = pinned_text(Some(&text), "a.so", B, &["elsewhere"]).unwrap();
        assert!(
            updated.contains("read_paths: [\"data/in\", \"it's here\"]"),
            "{updated}"
        );
        assert!(!updated.contains("elsewhere"), "{updated}");
        // Pinned before read paths existed: the same build gets them.
        let old = format!("plugins:\n  - path: a.so\n    sha256: {A}\n");
        let (text, outcome) = pinned_text(Some(&old), "a.so", A, &["data"]).unwrap();
        assert_eq!(outcome, Pinned::Updated { previous: A.into() });
        assert_eq!(text, format!("{old}    read_paths: [\"data\"]\n"));
    }
}
