//! The manifest reader (`verify`): any manifest is either checked or refused as malformed,
//! never a panic. Objects are served from memory: every listed key that is not the manifest
//! holds `OBJECT`, so seeds can list objects that match and objects that do not.
#![no_main]

use std::io::{Cursor, Read};

use custodian::progress::Silent;
use custodian::target::manifest::verify;
use custodian::target::{ObjectKey, ObjectWriter, Target, TargetError};
use libfuzzer_sys::fuzz_target;

/// The manifest's key.
const MANIFEST: &str = "_custodian/manifests/p/run-1.jsonl";
/// What every other object holds (SHA-256 ffd1…, 9 bytes).
const OBJECT: &[u8] = b"custodian";

struct Memory<'a> {
    manifest: &'a [u8],
}

impl Target for Memory<'_> {
    fn name(&self) -> &str {
        "memory"
    }

    fn check(&self) -> Result<(), TargetError> {
        Ok(())
    }

    fn create(
        &self,
        key: &ObjectKey,
        _sha256: Option<&str>,
    ) -> Result<Box<dyn ObjectWriter>, TargetError> {
        Err(TargetError::Unusable {
            target: self.name().to_owned(),
            message: format!("read-only: cannot write {key}"),
        })
    }

    fn open(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, TargetError> {
        match key.as_str() {
            MANIFEST => Ok(Box::new(Cursor::new(self.manifest.to_vec()))),
            k if k.starts_with("missing/") => Err(TargetError::NotFound {
                target: self.name().to_owned(),
                key: k.to_owned(),
            }),
            _ => Ok(Box::new(OBJECT)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let target = Memory { manifest: data };
    let key = ObjectKey::new(MANIFEST).expect("a valid key");
    match verify(&target, &key, &Silent) {
        Ok(report) => assert!(report.mismatches.len() as u64 <= report.objects),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
