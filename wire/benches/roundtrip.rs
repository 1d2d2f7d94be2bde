//! One check request and its receipt, the way a daemon and the server handle them:
//! encode the request, decode it, sign the receipt, encode the response, decode it,
//! verify the receipt. Raw ed25519-dalek sign + verify of the receipt payload in the
//! same run is the ceiling.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use keys::{LicenseNumber, Signed, SigningKeyPair, TrustedKeys, UnixTime};
use wire::codec;
use wire::*;

fn bench(c: &mut Criterion) {
    let key = SigningKeyPair::from_seed(&[5u8; 32]);
    let trusted = TrustedKeys::with([key.public()]);
    let check = Request::Check(Check {
        license_number: LicenseNumber::from_body(192_190_001).expect("body"),
        hardware_id: "502c649d1171ad2e8705074ce97791db".parse().expect("hwid"),
        grant_serial: Some(3),
        runtime: RuntimeState::Running,
        seats: Seats { ge: 1, pwa: 2 },
        daemon_version: "promos-licd/0.1.0".into(),
        nonce: Nonce([7; 16]),
    });

    let round_trip = || {
        let frame = codec::encode_frame(black_box(&check)).expect("encode");
        let Ok(Request::Check(req)) = codec::decode_frame::<Request>(&frame) else {
            panic!("decode");
        };
        let receipt = CheckReceipt {
            license_number: req.license_number,
            hardware_id: req.hardware_id,
            nonce: req.nonce,
            server_time: UnixTime(1_700_000_000),
            next_check_due: UnixTime(1_700_086_400),
            current_serial: 3,
        };
        let resp = Response::Checked {
            receipt: Signed::sign(&receipt, &key),
            grant: None,
        };
        let frame = codec::encode_frame(&resp).expect("encode");
        let Ok(Response::Checked { receipt, .. }) = codec::decode_frame::<Response>(&frame) else {
            panic!("decode");
        };
        trusted.verify(&receipt).is_ok()
    };
    assert!(round_trip());

    let raw = SigningKey::from_bytes(&[5u8; 32]);
    let payload = vec![0x5au8; 200]; // about the size of a receipt payload
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_sign_decode_verify", |b| b.iter(round_trip));
    group.bench_function("raw_ed25519_sign_plus_verify", |b| {
        b.iter(|| {
            let sig = raw.sign(black_box(&payload));
            raw.verifying_key().verify(&payload, &sig).is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
