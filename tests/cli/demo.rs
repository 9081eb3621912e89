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

#[test]
fn demo_export_exports_every_demo_conversation_but_the_imported_one() {
    let env = Env::new("");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo");
    copy_tree(&demo.join("repo"), &env.root());
    std::fs::copy(demo.join("custodian.toml"), env.config()).unwrap();
    let keystore = env.path().join("keystore.json");
    std::fs::copy(demo.join("keystore.json"), &keystore).unwrap();
    std::fs::set_permissions(&keystore, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, summary) = env.json(&["run", "demo-export"]);
    assert_eq!(code, 0, "{summary}");
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
