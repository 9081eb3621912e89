//! The README's first command, on a copy of the demo repository.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::Env;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// As on a fresh clone: git checks the demo keystore out mode 644, which custodian refuses
/// unless the config lets it make the file owner-only, as the demo's does.
#[test]
fn demo_export_exports_every_demo_conversation_but_the_imported_one() {
    let env = Env::new("");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    copy_tree(&demo.join("repo"), &env.root());
    std::fs::copy(demo.join("custodian.toml"), env.config()).unwrap();
    let keystore = env.path().join("keystore.json");
    std::fs::copy(demo.join("keystore.json"), &keystore).unwrap();
    std::fs::set_permissions(&keystore, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["--json", "run", "demo-export"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = out.status.code().unwrap();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(mode(&keystore), 0o600, "made owner-only");
    assert!(
        stderr.contains("was mode 644") && stderr.contains("owner-only, mode 600"),
        "{stderr}"
    );
    let seen = summary["index"]["seen"].as_u64().unwrap();
    assert!(seen >= 10, "{summary}");
    assert_eq!(
        summary["counters"]["exported"].as_u64(),
        Some(seen - 1),
        "all but the imported record"
    );
    assert_eq!(summary["counters"]["failed"], 0);
    let (code, report) = env.json(&["verify", &summary["run"].to_string()]);
    assert_eq!(code, 0, "{report}");
}
