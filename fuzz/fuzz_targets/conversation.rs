//! conversation.json: parsing and validating any bytes never panics, and a record that is
//! accepted is written back as JSON that is accepted again as the same record (the catalog and
//! the metadata files rely on records surviving that round trip).
#![no_main]

use custodian::repository::record::Conversation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Conversation::from_json(data) else {
        return;
    };
    let _ = record.duration_ms();
    for artifact in &record.artifacts {
        let _ = artifact.extension();
    }
    let written = serde_json::to_vec(&record).expect("an accepted record serializes");
    let again = Conversation::from_json(&written).expect("a written record is accepted again");
    assert_eq!(again, record);
});
