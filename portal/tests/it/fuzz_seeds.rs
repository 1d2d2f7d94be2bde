//! Replays the committed seeds (crash inputs included) of the `portal_forms` fuzz
//! target through the same entry point in the regular test run; the campaign
//! itself needs the sanitizer build (FUZZING.md). `forms` panics on any broken
//! invariant (a priced order whose gross is not net + VAT, a summary form that
//! does not decode to what was entered, an unsafe redirect target, ...).

use std::path::PathBuf;

#[test]
fn every_portal_forms_seed_passes_the_targets_invariants() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/portal_forms");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("seed dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("seed");
        portal::fuzzing::forms(&bytes);
        n += 1;
    }
    assert!(n >= 8, "seeds of every form in {}", dir.display());
}
