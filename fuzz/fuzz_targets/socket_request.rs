//! Untrusted bytes from any local client of the daemon's Unix socket: one request
//! line. Parsing must never panic; a line that is not a request must give a
//! complete error answer (a JSON object with `"ok":false`, an error code and a
//! message, the request's `id` if it had one) that serializes to one line.
#![no_main]

use daemon::socket::{parse_request, Command};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Ok((id, cmd)) => {
            // The request was a JSON object: its id was taken out of it.
            let v: Value = serde_json::from_slice(data).expect("a parsed request is JSON");
            let obj = v.as_object().expect("a parsed request is an object");
            assert_eq!(obj.get("id"), id.as_ref());
            assert!(obj.get("cmd").is_some_and(Value::is_string));
            // What `answer` parses next.
            if let Command::Activate { license_number, .. } = &cmd {
                let _ = license_number.parse::<keys::LicenseNumber>();
            }
        }
        Err(reply) => {
            let obj = reply.as_object().expect("an error answer is an object");
            assert_eq!(obj.get("ok"), Some(&Value::Bool(false)));
            assert_eq!(
                obj.get("error").and_then(Value::as_str),
                Some("bad_request")
            );
            assert!(obj.get("message").is_some_and(Value::is_string));
            let line = serde_json::to_vec(&reply).expect("an answer serializes");
            assert!(!line.contains(&b'\n'), "an answer is one line");
            let again: Value = serde_json::from_slice(&line).expect("an answer parses back");
            assert_eq!(again, reply);
        }
    }
});
