//! Replays the committed fuzz seeds (crash inputs included) of the daemon's
//! targets, with the targets' invariants, in the regular test run: the campaigns
//! themselves need the sanitizer build (FUZZING.md).

use daemon::licinfo::LicInfo;
use daemon::socket::parse_request;
use serde_json::Value;
use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("entry").path();
            let bytes = std::fs::read(&path).expect("seed");
            (path, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

#[test]
fn socket_request_seeds_parse_or_get_a_complete_error_answer() {
    let mut parsed = 0;
    for (path, bytes) in seeds("socket_request") {
        let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        match parse_request(line) {
            Ok((id, _)) => {
                let v: Value = serde_json::from_slice(line).expect("parsed means JSON");
                let obj = v
                    .as_object()
                    .unwrap_or_else(|| panic!("{path:?}: not an object"));
                assert_eq!(obj.get("id"), id.as_ref(), "{path:?}");
                assert!(obj.get("cmd").is_some_and(Value::is_string), "{path:?}");
                parsed += 1;
            }
            Err(reply) => {
                assert_eq!(reply["ok"], Value::Bool(false), "{path:?}");
                assert_eq!(reply["error"], "bad_request", "{path:?}");
                assert!(reply["message"].is_string(), "{path:?}");
                assert!(!serde_json::to_string(&reply).expect("json").contains('\n'));
            }
        }
    }
    assert!(parsed >= 10, "the protocol's commands parse ({parsed})");
    let array = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds/socket_request/array_request.json"),
    )
    .expect("the array crash input");
    assert!(
        parse_request(array.trim_ascii_end()).is_err(),
        "arrays are refused"
    );
}

#[test]
fn licinfo_seeds_render_to_what_they_parse_to() {
    for (path, bytes) in seeds("licinfo_file") {
        let text = String::from_utf8(bytes).expect("utf-8 seed");
        let info = LicInfo::parse(&text, "licinfo.cfg").unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let again = LicInfo::parse(&info.render(), "licinfo.cfg").expect("rendered parses");
        assert_eq!(again, info, "{path:?}");
    }
}
