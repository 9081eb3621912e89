//! The layer check: every library module imports (`crate::…`) only modules in rows below its
//! own in the layer table of `docs/ARCHITECTURE.md` (section "Layers"), and every top-level
//! module of `src/lib.rs` has a row. Strict rows leave no room for a cycle between top-level
//! modules. The binary (`src/main.rs`, `src/cli/`) sits above the table and is not checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Row of each module named in the table (1 is the top).
type Table = BTreeMap<String, u32>;

/// One `crate::` path whose first module is not below the importing one.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    path: String,
    from: (String, u32),
    to: (String, u32),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.to.1 == self.from.1 {
            "sideways"
        } else {
            "up"
        };
        write!(
            f,
            "{}:{}: `{}` goes {how}: {} (row {}) imports {} (row {})",
            self.file, self.line, self.path, self.from.0, self.from.1, self.to.0, self.to.1
        )
    }
}

/// Reads the table from the `## Layers` section: rows `| n | `a`, `b` | what |`.
fn parse_table(markdown: &str) -> Table {
    let mut table = Table::new();
    let section = markdown
        .split("\n## ")
        .find(|s| s.starts_with("Layers"))
        .expect("docs/ARCHITECTURE.md has a `## Layers` section");
    for line in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(row), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(row) = row.parse::<u32>() else {
            continue;
        };
        for name in modules.split('`').skip(1).step_by(2) {
            let previous = table.insert(name.to_owned(), row);
            assert!(previous.is_none(), "`{name}` is in the table twice");
        }
    }
    assert!(!table.is_empty(), "the Layers section has no table rows");
    table
}

/// The top-level modules `src/lib.rs` declares.
fn lib_modules(lib: &str) -> Vec<String> {
    let code = strip(lib);
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// `source` with comments, and the contents of string and character literals, blanked out
/// (newlines kept, so line numbers stay right).
fn strip(source: &str) -> String {
    let c: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut out, ' ');
                    i += 1;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut out, ' ');
                    i += 1;
                    if depth == 0 {
                        blank(&mut out, ' ');
                        i += 1;
                        break;
                    }
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if let Some(hashes) = raw_string_start(&c, i) {
            // r"…", r#"…"#, br"…": no escapes; ends at a quote followed by as many hashes.
            let open = c[i..].iter().position(|&ch| ch == '"').expect("seen") + 1;
            for _ in 0..open {
                blank(&mut out, ' ');
            }
            i += open;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        blank(&mut out, ' ');
                    }
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(0) == '"' {
            blank(&mut out, ' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, ' ');
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            blank(&mut out, ' ');
            i += 1;
        } else if at(0) == '\'' && (at(1) == '\\' || at(2) == '\'') {
            // A character literal ('x', '\n', '\u{7f}'); a lifetime ('a) is left as it is.
            let end = c[i + 2..]
                .iter()
                .position(|&ch| ch == '\'')
                .map_or(c.len(), |p| i + 2 + p + 1);
            while i < end {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The number of hashes of a raw string literal starting at `i`, if one does.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && is_ident(c[i - 1]) {
        return None;
    }
    let mut j = i;
    if c.get(j) == Some(&'b') || c.get(j) == Some(&'c') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&ch| ch == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some(hashes)
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Every path that starts at `crate::` (or `$crate::` in a macro) in stripped code, with its
/// line: `use crate::{a, b::{c, d}}` gives `crate::a`, `crate::b::c` and `crate::b::d`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&c, i, "crate") {
        i = p + "crate".len();
        if (p > 0 && is_ident(c[p - 1])) || c.get(i).is_some_and(|&ch| is_ident(ch)) {
            continue;
        }
        let mut j = skip_space(&c, i);
        if !(c.get(j) == Some(&':') && c.get(j + 1) == Some(&':')) {
            continue;
        }
        j += 2;
        let line = c[..p].iter().filter(|&&ch| ch == '\n').count() + 1;
        let mut paths = Vec::new();
        tree(&c, &mut j, "crate".to_owned(), &mut paths);
        found.extend(paths.into_iter().map(|path| (line, path)));
        i = j;
    }
    found
}

fn find(c: &[char], from: usize, word: &str) -> Option<usize> {
    let w: Vec<char> = word.chars().collect();
    (from..c.len().saturating_sub(w.len() - 1)).find(|&k| c[k..k + w.len()] == w[..])
}

fn skip_space(c: &[char], mut i: usize) -> usize {
    while c.get(i).is_some_and(|ch| ch.is_whitespace()) {
        i += 1;
    }
    i
}

/// Reads a use tree after `prefix::` at `*i`, pushing each full path it names.
fn tree(c: &[char], i: &mut usize, prefix: String, paths: &mut Vec<String>) {
    *i = skip_space(c, *i);
    if c.get(*i) == Some(&'{') {
        *i += 1;
        loop {
            *i = skip_space(c, *i);
            match c.get(*i) {
                Some('}') => {
                    *i += 1;
                    return;
                }
                Some(',') => *i += 1,
                None => return,
                Some(_) => {
                    let before = *i;
                    tree(c, i, prefix.clone(), paths);
                    // Skip what a tree does not name (`as alias`), up to the next item.
                    while c.get(*i).is_some_and(|&ch| ch != ',' && ch != '}') {
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1;
                    }
                }
            }
        }
    }
    let start = *i;
    while c.get(*i).is_some_and(|&ch| is_ident(ch) || ch == '*') {
        *i += 1;
    }
    let name: String = c[start..*i].iter().collect();
    if name.is_empty() {
        paths.push(prefix);
        return;
    }
    let path = format!("{prefix}::{name}");
    let j = skip_space(c, *i);
    if c.get(j) == Some(&':') && c.get(j + 1) == Some(&':') {
        *i = j + 2;
        tree(c, i, path, paths);
    } else {
        paths.push(path);
    }
}

/// The violations in one file of module `module`, named `file` in messages.
fn check_source(table: &Table, module: &str, file: &str, source: &str) -> Vec<Violation> {
    let from = table[module];
    crate_paths(&strip(source))
        .into_iter()
        .filter_map(|(line, path)| {
            let to = path.split("::").nth(1)?.to_owned();
            let row = *table.get(&to)?;
            (to != module && row <= from).then(|| Violation {
                file: file.to_owned(),
                line,
                path,
                from: (module.to_owned(), from),
                to: (to, row),
            })
        })
        .collect()
}

/// The `.rs` files of a top-level module: `src/x.rs`, or everything under `src/x/`.
fn files_of(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.is_file() {
        files.push(single);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read the source tree").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn library_modules_import_only_the_rows_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = parse_table(
        &std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md"),
    );
    let src = root.join("src");
    let modules = lib_modules(&std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs"));
    let mut problems: Vec<String> = modules
        .iter()
        .filter(|m| !table.contains_key(*m))
        .map(|m| format!("module `{m}` of src/lib.rs has no row in the Layers table"))
        .collect();
    for module in modules.iter().filter(|m| table.contains_key(*m)) {
        for file in files_of(&src, module) {
            let name = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let source = std::fs::read_to_string(&file).expect("read a source file");
            problems.extend(
                check_source(&table, module, &name, &source)
                    .iter()
                    .map(Violation::to_string),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "{} import(s) break the layer table of docs/ARCHITECTURE.md:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A small table for the checks of the checker.
fn sample_table() -> Table {
    parse_table(
        "# A\n\n## Layers\n\n| row | modules | what |\n|---|---|---|\n| 1 | `policy` | jobs |\n\
         | 2 | `catalog`, `store` | storage |\n| 3 | `audit` | events |\n\n## Next\n\n| 9 | `x` | no |\n",
    )
}

#[test]
fn the_table_is_read_from_its_section_only() {
    let t = sample_table();
    assert_eq!(
        t.into_iter().collect::<Vec<_>>(),
        [
            ("audit".to_owned(), 3),
            ("catalog".to_owned(), 2),
            ("policy".to_owned(), 1),
            ("store".to_owned(), 2),
        ]
    );
}

#[test]
fn an_upward_import_is_reported() {
    let found = check_source(
        &sample_table(),
        "catalog",
        "src/catalog/mod.rs",
        "use crate::audit::AuditEvent;\nuse crate::policy::lifecycle::RetentionAction;\n",
    );
    assert_eq!(
        found,
        [Violation {
            file: "src/catalog/mod.rs".into(),
            line: 2,
            path: "crate::policy::lifecycle::RetentionAction".into(),
            from: ("catalog".into(), 2),
            to: ("policy".into(), 1),
        }]
    );
    assert_eq!(
        found[0].to_string(),
        "src/catalog/mod.rs:2: `crate::policy::lifecycle::RetentionAction` goes up: catalog (row 2) imports policy (row 1)"
    );
}

#[test]
fn a_sideways_import_in_a_group_or_in_code_is_reported() {
    let source = "use crate::{\n    audit::{self, AuditKind},\n    store::{Journal, x::Y as Z},\n};\n\
                  fn f() -> crate::policy::Thing { $crate::store::make() }\n";
    let found: Vec<(usize, String)> = check_source(&sample_table(), "catalog", "f.rs", source)
        .into_iter()
        .map(|v| (v.line, v.path))
        .collect();
    assert_eq!(
        found,
        [
            (1, "crate::store::Journal".to_owned()),
            (1, "crate::store::x::Y".to_owned()),
            (5, "crate::policy::Thing".to_owned()),
            (5, "crate::store::make".to_owned()),
        ]
    );
}

#[test]
fn comments_strings_and_own_module_paths_are_not_imports() {
    let source = "// use crate::policy::X;\n/* crate::policy::Y /* nested */ crate::policy::Z */\n\
                  /// [`crate::policy::W`]\nconst A: &str = \"crate::policy::V\";\n\
                  const B: &str = r#\"crate::policy::\"U\"#;\nconst C: char = '\"';\n\
                  fn g<'a>(x: &'a str) -> crate::catalog::Own<'a> { todo!() }\n\
                  use crate::audit::Below;\nuse crate::unlisted::Thing;\nlet cratex::policy = 1;\n";
    assert_eq!(check_source(&sample_table(), "catalog", "f.rs", source), []);
    assert_eq!(
        crate_paths(&strip(source))
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>(),
        [
            "crate::catalog::Own",
            "crate::audit::Below",
            "crate::unlisted::Thing"
        ]
    );
}

#[test]
fn lib_modules_are_read_from_their_declarations() {
    assert_eq!(
        lib_modules("//! doc\n#![forbid(unsafe_code)]\npub mod audit;\nmod inner;\n// mod gone;\n"),
        ["audit", "inner"]
    );
}
