//! Finds where a key is written in a TOML file, so that errors found after parsing (a bad
//! template, a reference to a target that does not exist) still name the line.

use toml_edit::{ImDocument, Item};

/// 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based line where the value of dotted `path` is written, or of its nearest written parent.
pub fn line_of_key(doc: &ImDocument<&str>, path: &[&str]) -> Option<usize> {
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for key in path {
        let Some(table) = item.as_table_like() else {
            break;
        };
        if let Some(span) = table.key(key).and_then(|k| k.span()) {
            best = Some(span.start);
        }
        match table.get(key) {
            Some(next) => item = next,
            None => break,
        }
    }
    best.map(|offset| line_of(doc.raw(), offset))
}
