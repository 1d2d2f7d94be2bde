//! Untrusted bytes from the project directory: `lic/licinfo.cfg`, which anyone
//! with access to the project can edit. Parsing must never panic, and what
//! parses must render to a file that parses to the same content.
#![no_main]

use daemon::licinfo::LicInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = LicInfo::parse(text, "licinfo.cfg") {
        let again = LicInfo::parse(&info.render(), "licinfo.cfg").expect("a rendered file parses");
        assert_eq!(again, info);
    }
});
