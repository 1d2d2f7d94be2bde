//! The signed license file as a customer receives it, and every way it can be spoiled.

use expect_test::expect;
use keys::file::{self, LicenseFileErrorKind};
use keys::grant::GRANT_FORMAT;
use keys::{
    Binding, Driver, Entitlements, LicenseData, LicenseGrant, LicenseNumber, LicenseType,
    MalmModule, Protection, Signed, SigningKeyPair, TrustedKeys, UnixTime,
};

fn vendor_key() -> SigningKeyPair {
    SigningKeyPair::from_seed(&[42u8; 32])
}

fn hard_dongle_grant(key: &SigningKeyPair) -> LicenseGrant {
    let mut entitlements = Entitlements::standard_base();
    entitlements.drivers.insert(Driver::Modbus, 10_010);
    entitlements.drivers.insert(Driver::SaiaPcd, 6_100);
    entitlements.malm.insert(MalmModule::Email);
    entitlements.pwa_users = 5;
    LicenseGrant {
        format: GRANT_FORMAT,
        license_number: LicenseNumber::from_body(192_190_001).expect("body"),
        license_type: LicenseType::Standard,
        protection: Protection::HardDongle,
        license_data: LicenseData {
            name: "Christoph Müller".into(),
            postcode: "63457".into(),
            city: "Hanau".into(),
        },
        binding: Binding::DongleSerial("DG-000123".parse().expect("serial")),
        entitlements,
        issued_at: UnixTime(1_631_650_000),
        valid_until: None,
        serial: 3,
        key_id: key.key_id(),
    }
}

fn signed_file() -> (String, TrustedKeys) {
    let key = vendor_key();
    let trusted = TrustedKeys::with([key.public()]);
    let signed = Signed::sign(&hard_dongle_grant(&key), &key);
    let verified = trusted.verify(&signed).expect("fresh grant verifies");
    (file::render(&verified), trusted)
}

#[test]
fn rendered_file_parses_back_to_the_same_grant() {
    let (text, trusted) = signed_file();
    let verified = file::parse(text.as_bytes(), &trusted).expect("valid file");
    assert_eq!(*verified, hard_dongle_grant(&vendor_key()));
}

#[test]
fn license_file_as_the_customer_sees_it() {
    let (text, _) = signed_file();
    expect![[r#"
        {
          "format": "promos-license-file/1",
          "license": {
            "format": 1,
            "license_number": "1921900019",
            "license_type": "standard",
            "protection": "hard_dongle",
            "license_data": {
              "name": "Christoph Müller",
              "postcode": "63457",
              "city": "Hanau"
            },
            "binding": {
              "dongle_serial": "DG-000123"
            },
            "entitlements": {
              "drivers": {
                "bacnet_ip": 10,
                "modbus": 10010,
                "mbus": 1,
                "saia_pcd": 6100,
                "beckhoff_ads": 100,
                "iec60870": 1,
                "opc_da": 10,
                "mqtt": 10,
                "snmp": 1,
                "espa": 1,
                "email": 10,
                "knx": 10
              },
              "malm": [
                "email"
              ],
              "mystrom": false,
              "philips_hue": false,
              "ge_users": 1,
              "pwa_users": 5
            },
            "issued_at": 1631650000,
            "valid_until": null,
            "serial": 3,
            "key_id": "b600306cfa76723f"
          },
          "key_id": "b600306cfa76723f",
          "signature": "2e0feb6fb413454bcaf9d6be2b2e12a991b4c230db8c173c725fdc7fdde2a85fc8cfe310e04f90404c6f93da96f4a7bd14535ccf76225ef80f50980720fa610d"
        }
    "#]]
    .assert_eq(&text);
}

#[test]
fn every_single_byte_change_is_rejected() {
    let (text, trusted) = signed_file();
    let bytes = text.as_bytes();
    // For each position try a small set of replacement bytes: a neighbouring value,
    // a case flip, a digit, a space and a quote. That covers semantic edits
    // (numbers, letters), layout edits (whitespace) and syntax breaks.
    let mut tried = 0;
    for i in 0..bytes.len() {
        for replacement in [bytes[i] ^ 0x01, bytes[i] ^ 0x20, b'7', b' ', b'"'] {
            if replacement == bytes[i] {
                continue;
            }
            let mut edited = bytes.to_vec();
            edited[i] = replacement;
            tried += 1;
            assert!(
                file::parse(&edited, &trusted).is_err(),
                "byte {i} ({:?} -> {:?}) was accepted",
                bytes[i] as char,
                replacement as char
            );
        }
    }
    assert!(tried > 4 * bytes.len());
}

#[test]
fn every_truncation_and_an_extension_is_rejected() {
    let (text, trusted) = signed_file();
    let bytes = text.as_bytes();
    for len in 0..bytes.len() {
        assert!(
            file::parse(&bytes[..len], &trusted).is_err(),
            "truncated to {len}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(b'\n');
    assert_eq!(
        file::parse(&longer, &trusted).err(),
        Some(LicenseFileErrorKind::Edited)
    );
}

#[test]
fn a_changed_value_is_a_bad_signature_not_just_an_edit() {
    let (text, trusted) = signed_file();
    let edited = text.replace("\"pwa_users\": 5", "\"pwa_users\": 9");
    assert_ne!(edited, text);
    assert_eq!(
        file::parse(edited.as_bytes(), &trusted).err(),
        Some(LicenseFileErrorKind::BadSignature)
    );
}

#[test]
fn unknown_and_retired_keys_are_named() {
    let (text, mut trusted) = signed_file();
    let stranger = TrustedKeys::with([SigningKeyPair::generate().public()]);
    assert!(matches!(
        file::parse(text.as_bytes(), &stranger),
        Err(LicenseFileErrorKind::UnknownKey(_))
    ));
    trusted.retire(&vendor_key().key_id());
    assert!(matches!(
        file::parse(text.as_bytes(), &trusted),
        Err(LicenseFileErrorKind::RetiredKey(_))
    ));
}

#[test]
fn other_files_get_clear_errors_naming_the_file() {
    let (text, trusted) = signed_file();
    let dir = tempfile::tempdir().expect("tempdir");

    let ini = dir.path().join("promos.json");
    std::fs::write(&ini, "[ActCode]\nCodeA=b94d0a5f\n").expect("write");
    let err = file::read(&ini, &trusted).expect_err("not json");
    assert!(matches!(err.kind, LicenseFileErrorKind::NotALicenseFile(_)));
    assert!(err.to_string().contains("promos.json"), "{err}");

    let other_json = dir.path().join("other.json");
    std::fs::write(&other_json, "{\"hello\": 1}").expect("write");
    assert!(matches!(
        file::read(&other_json, &trusted)
            .expect_err("no format")
            .kind,
        LicenseFileErrorKind::NotALicenseFile(_)
    ));

    let future = dir.path().join("future.json");
    std::fs::write(
        &future,
        text.replace("promos-license-file/1", "promos-license-file/2"),
    )
    .expect("write");
    let err = file::read(&future, &trusted).expect_err("future version");
    assert_eq!(
        err.kind,
        LicenseFileErrorKind::WrongVersion {
            found: "promos-license-file/2".into()
        }
    );
    assert!(
        err.to_string().contains("update the ProMoS license daemon"),
        "{err}"
    );

    let good = dir.path().join("good.json");
    std::fs::write(&good, &text).expect("write");
    assert!(file::read(&good, &trusted).is_ok());
}
