//! A small PDF 1.4 writer for text documents (the control attestation's
//! printable form, seed 003 D60): Helvetica from the standard 14 fonts
//! (nothing embedded), WinAnsi text, A4 pages of lines, no creation date
//! and a document id derived from the content, so the same lines give the
//! same bytes.

use sha2::{Digest, Sha256};

const PAGE_WIDTH: u32 = 595;
const PAGE_HEIGHT: u32 = 842;
const MARGIN: u32 = 50;
const LEADING: u32 = 14;
const LINES_PER_PAGE: usize = ((PAGE_HEIGHT - 2 * MARGIN) / LEADING) as usize;
/// Characters a line holds before it is wrapped (10 pt Helvetica).
const WRAP: usize = 95;

/// One line of text and its size in points.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub size: u32,
}

impl Line {
    pub fn heading(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            size: 14,
        }
    }

    pub fn body(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            size: 10,
        }
    }
}

/// A character in WinAnsiEncoding (Latin-1 plus the typographic marks of
/// 0x80–0x9F); others become `?`.
fn win_ansi(c: char) -> u8 {
    match c {
        '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{ff}' => c as u8,
        '€' => 0x80,
        '‚' => 0x82,
        '„' => 0x84,
        '…' => 0x85,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '™' => 0x99,
        _ => b'?',
    }
}

/// A PDF string literal of `text`.
fn literal(text: &str) -> Vec<u8> {
    let mut out = vec![b'('];
    for byte in text.chars().map(win_ansi) {
        if matches!(byte, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b')');
    out
}

/// Long lines split at spaces (or hard at [`WRAP`] characters).
fn wrapped(lines: &[Line]) -> Vec<Line> {
    let mut out = Vec::new();
    for line in lines {
        let width = if line.size > 10 {
            WRAP * 10 / line.size as usize
        } else {
            WRAP
        };
        let mut rest: Vec<char> = line.text.chars().collect();
        loop {
            if rest.len() <= width {
                out.push(Line {
                    text: rest.iter().collect(),
                    size: line.size,
                });
                break;
            }
            // A space past the line's own indentation, else a hard cut.
            let indent = rest.iter().take_while(|c| **c == ' ').count();
            let cut = rest[..width]
                .iter()
                .rposition(|c| *c == ' ')
                .filter(|&at| at > indent)
                .unwrap_or(width);
            out.push(Line {
                text: rest[..cut].iter().collect(),
                size: line.size,
            });
            rest = rest[cut..]
                .iter()
                .skip_while(|c| **c == ' ')
                .copied()
                .collect();
            // Continuations are indented.
            rest.splice(0..0, "    ".chars());
        }
    }
    out
}

/// The PDF of `lines` with `title` in its metadata.
pub fn render(title: &str, lines: &[Line]) -> Vec<u8> {
    let lines = wrapped(lines);
    let pages: Vec<&[Line]> = if lines.is_empty() {
        vec![&[][..]]
    } else {
        lines.chunks(LINES_PER_PAGE).collect()
    };
    // Objects: 1 catalog, 2 pages, 3 font, 4 info, then a page and its
    // content per page.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    let page_ids: Vec<usize> = (0..pages.len()).map(|i| 5 + 2 * i).collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = page_ids.iter().map(|id| format!("{id} 0 R")).collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    let mut info = b"<< /Title ".to_vec();
    info.extend(literal(title));
    info.extend(b" /Producer (patrol evidence-audit) >>");
    objects.push(info);
    for (n, page) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                page_ids[n] + 1
            )
            .into_bytes(),
        );
        let mut content = Vec::new();
        let mut y = PAGE_HEIGHT - MARGIN;
        for line in page.iter() {
            content.extend(format!("BT /F1 {} Tf {MARGIN} {y} Td ", line.size).into_bytes());
            content.extend(literal(&line.text));
            content.extend(b" Tj ET\n");
            y -= LEADING;
        }
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend(content);
        stream.extend(b"endstream");
        objects.push(stream);
    }
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
        out.extend(object);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").into_bytes());
    }
    let id = hex::encode(&Sha256::digest(&out)[..16]);
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 4 0 R /ID [<{id}> <{id}>] >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .into_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_encoded_for_win_ansi() {
        assert_eq!(
            literal("a(b)\\c — é ✓"),
            b"(a\\(b\\)\\\\c \x97 \xe9 ?)".to_vec()
        );
    }

    #[test]
    fn long_lines_wrap_at_spaces_and_pages_break() {
        let long = Line::body("word ".repeat(40));
        let lines = wrapped(&[long]);
        assert!(lines.len() >= 2 && lines.iter().all(|l| l.text.chars().count() <= WRAP));
        // One long word after an indentation: cut hard, and it ends.
        let word = Line::body(format!("      {}", "x".repeat(300)));
        let cut = wrapped(&[word]);
        assert_eq!(cut.iter().map(|l| l.text.trim().len()).sum::<usize>(), 300);
        let many: Vec<Line> = (0..120).map(|i| Line::body(format!("line {i}"))).collect();
        let pdf = render("t", &many);
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Count 3"), "{} pages", LINES_PER_PAGE);
        assert_eq!(render("t", &many), pdf);
    }
}
