//! Channel segment records (`<segment>.json`): parsing any bytes never panics, and an accepted
//! record round-trips through JSON unchanged.
#![no_main]

use custodian::repository::segment::Segment;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(segment) = Segment::from_json(data) else {
        return;
    };
    let written = serde_json::to_vec(&segment).expect("an accepted segment serializes");
    let again = Segment::from_json(&written).expect("a written segment is accepted again");
    assert_eq!(again, segment);
});
