//! Sign and verify rates for a license grant, with raw ed25519-dalek sign and
//! verify over the same bytes in the same run as the ceiling.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use keys::grant::GRANT_FORMAT;
use keys::{
    Binding, Entitlements, LicenseData, LicenseGrant, LicenseNumber, LicenseType, Protection,
    Signed, SigningKeyPair, TrustedKeys, UnixTime,
};

fn grant(key: &SigningKeyPair) -> LicenseGrant {
    LicenseGrant {
        format: GRANT_FORMAT,
        license_number: LicenseNumber::from_body(192_190_001).expect("body"),
        license_type: LicenseType::Standard,
        protection: Protection::SoftDongle,
        license_data: LicenseData {
            name: "Bench".into(),
            postcode: "3123".into(),
            city: "Belp".into(),
        },
        binding: Binding::HardwareId("502c649d1171ad2e8705074ce97791db".parse().expect("hwid")),
        entitlements: Entitlements::standard_base(),
        issued_at: UnixTime(1_700_000_000),
        valid_until: None,
        serial: 1,
        key_id: key.key_id(),
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKeyPair::from_seed(&[1u8; 32]);
    let trusted = TrustedKeys::with([key.public()]);
    let g = grant(&key);
    let signed = Signed::sign(&g, &key);
    let payload = signed.payload().to_vec();
    let raw = SigningKey::from_bytes(&[1u8; 32]);
    let raw_sig = raw.sign(&payload);

    let mut group = c.benchmark_group("grant");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| b.iter(|| Signed::sign(black_box(&g), &key)));
    group.bench_function("verify", |b| {
        b.iter(|| trusted.verify(black_box(&signed)).is_ok())
    });
    group.bench_function("raw_ed25519_sign", |b| {
        b.iter(|| raw.sign(black_box(&payload)))
    });
    group.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| {
            raw.verifying_key()
                .verify(black_box(&payload), &raw_sig)
                .is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
