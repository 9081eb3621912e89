//! Google Cloud Storage targets: no GCS emulator installs on this machine, so these tests
//! stop at configuration and credentials; uploads run through the same engine as S3 and Azure.

use crate::common::{Env, text};

fn gcs_env() -> Env {
    let env = Env::new("");
    env.write_config(
        "[repository]\nroot = \"repo\"\n[targets.gcs]\nkind = \"gcs\"\nbucket = \"archive\"\nprefix = \"exports\"\nendpoint = \"http://127.0.0.1:9\"\n[policies.export]\naction = \"export\"\ntarget = \"gcs\"\n",
    );
    env.conversation("acme", 1, "a1", &[("call.wav", b"RIFF")]);
    env
}

#[test]
fn unreadable_service_account_stops_before_any_work() {
    let env = gcs_env();
    let out = env
        .command(&["run", "export"])
        .env(
            "GOOGLE_SERVICE_ACCOUNT",
            env.dir.path().join("missing-key.json"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("target `gcs`") && msg.contains("missing-key.json"),
        "{msg}"
    );
}

#[test]
fn a_gcs_target_needs_a_bucket() {
    let env = Env::new("");
    env.write_config(
        "[repository]\nroot = \"repo\"\n[targets.gcs]\nkind = \"gcs\"\nprefix = \"x\"\n[policies.export]\naction = \"export\"\ntarget = \"gcs\"\n",
    );
    let out = env.command(&["run", "export"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("needs `bucket`"), "{}", text(&out));
}
