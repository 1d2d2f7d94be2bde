//! Untrusted bytes from the network: frames of requests and responses (to the
//! server and between peers), and the relay envelope's inner body. Must never panic or allocate beyond the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::codec;
use wire::{Request, Response};

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode_frame::<Request>(data);
    let _ = codec::decode_frame::<Response>(data);
    let _ = codec::decode_frame::<wire::PeerRequest>(data);
    let _ = codec::decode_frame::<wire::PeerResponse>(data);
    if let Ok(Some((body, _))) = codec::split_frame(data) {
        if let Ok(Request::Relay(env)) = codec::decode_body::<Request>(body) {
            let _ = codec::decode_body::<Request>(&env.body);
        }
    }
    // Whatever decodes must encode again to the same message.
    if let Ok(req) = codec::decode_frame::<Request>(data) {
        let again = codec::encode_frame(&req).expect("a decoded message encodes");
        assert_eq!(codec::decode_frame::<Request>(&again).ok(), Some(req));
    }
});
