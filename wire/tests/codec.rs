//! Round trips, limits and hostile input for the wire codec.

use expect_test::expect;
use keys::grant::GRANT_FORMAT;
use keys::{
    Binding, Entitlements, LicenseData, LicenseGrant, LicenseNumber, LicenseType, Protection,
    Signed, SigningKeyPair, TrustedKeys, UnixTime,
};
use proptest::prelude::*;
use wire::codec::{self, DecodeError};
use wire::*;

fn key() -> SigningKeyPair {
    SigningKeyPair::from_seed(&[9u8; 32])
}
fn number() -> LicenseNumber {
    LicenseNumber::from_body(192_190_001).expect("body")
}
fn hwid() -> keys::HardwareId {
    "502c649d1171ad2e8705074ce97791db".parse().expect("hwid")
}

fn grant() -> Signed<LicenseGrant> {
    let k = key();
    Signed::sign(
        &LicenseGrant {
            format: GRANT_FORMAT,
            license_number: number(),
            license_type: LicenseType::Standard,
            protection: Protection::SoftDongle,
            license_data: LicenseData {
                name: "Test AG".into(),
                postcode: "3123".into(),
                city: "Belp".into(),
            },
            binding: Binding::HardwareId(hwid()),
            entitlements: Entitlements::standard_base(),
            issued_at: UnixTime(1_700_000_000),
            valid_until: None,
            serial: 1,
            key_id: k.key_id(),
        },
        &k,
    )
}

fn receipt() -> Signed<CheckReceipt> {
    Signed::sign(
        &CheckReceipt {
            license_number: number(),
            hardware_id: hwid(),
            nonce: Nonce([3; 16]),
            server_time: UnixTime(1_700_000_000),
            next_check_due: UnixTime(1_700_086_400),
            current_serial: 1,
        },
        &key(),
    )
}

fn refusal() -> Signed<Refusal> {
    Signed::sign(
        &Refusal {
            reason: RefusalReason::LicenseWasReset,
            license_number: number(),
            hardware_id: hwid(),
            nonce: Nonce([4; 16]),
            server_time: UnixTime(1_700_000_000),
        },
        &key(),
    )
}

fn check() -> Check {
    Check {
        license_number: number(),
        hardware_id: hwid(),
        grant_serial: Some(1),
        runtime: RuntimeState::Running,
        seats: Seats { ge: 1, pwa: 2 },
        daemon_version: "promos-licd/0.1.0".into(),
        nonce: Nonce([7; 16]),
    }
}

fn all_requests() -> Vec<Request> {
    let relay_body = codec::encode_body(&Request::Check(check())).expect("encode");
    vec![
        Request::Hello(Hello {
            min_version: 1,
            max_version: 1,
            agent: "promos-licd/0.1.0".into(),
        }),
        Request::Activate(Activate {
            license_number: number(),
            token: Token("s3cr3t-token".into()),
            hardware_id: hwid(),
            daemon_version: "promos-licd/0.1.0".into(),
            nonce: Nonce([1; 16]),
        }),
        Request::Check(check()),
        Request::Deactivate(Deactivate {
            license_number: number(),
            token: Token("s3cr3t-token".into()),
            hardware_id: hwid(),
            nonce: Nonce([2; 16]),
        }),
        Request::Relay(RelayEnvelope {
            relay: hwid(),
            body: relay_body,
        }),
        Request::ActivateWithFacts(
            Activate {
                license_number: number(),
                token: Token("s3cr3t-token".into()),
                hardware_id: hwid(),
                daemon_version: "promos-licd/0.2.0".into(),
                nonce: Nonce([1; 16]),
            },
            facts(),
        ),
        Request::CheckWithFacts(check(), facts()),
        Request::CheckCompact(CompactCheck::of(&check(), &facts()).expect("compact")),
    ]
}

fn facts() -> wire::HardwareFacts {
    wire::HardwareFacts::from_lines([
        "machine-id=0123456789abcdef0123456789abcdef",
        "cpu=Intel(R) Xeon(R)",
        "mac=00:11:22:33:44:55",
        "mac=00:11:22:33:44:66",
    ])
}

/// The facts travel in new variants appended to `Request`: a check of a daemon
/// before issue 19 keeps its bytes (the frame above), the new one starts with
/// variant 6, and dropping the facts gives the old message back.
#[test]
fn checks_with_facts_are_new_variants_and_fall_back_to_the_old_ones() {
    let with = Request::CheckWithFacts(check(), facts());
    let body = codec::encode_body(&with).expect("encode");
    assert_eq!(body[2], 6, "variant index of CheckWithFacts");
    assert_eq!(codec::decode_body::<Request>(&body), Ok(with.clone()));
    assert_eq!(with.without_facts(), Some(Request::Check(check())));
    assert_eq!(Request::Check(check()).without_facts(), None);
    // Four facts add about 4 x 33 bytes: far below the frame limit.
    assert!(body.len() < 400, "{} bytes", body.len());
}

fn all_responses() -> Vec<Response> {
    vec![
        Response::Hello {
            version: 1,
            agent: "pls/0.1.0".into(),
        },
        Response::Activated {
            grant: grant(),
            receipt: receipt(),
        },
        Response::Checked {
            receipt: receipt(),
            grant: Some(grant()),
        },
        Response::Checked {
            receipt: receipt(),
            grant: None,
        },
        Response::Deactivated { receipt: receipt() },
        Response::Refused(refusal()),
        Response::Error(ErrorReply::UnsupportedProtocolVersion { min: 1, max: 1 }),
        Response::Error(ErrorReply::Malformed("x".into())),
        Response::Error(ErrorReply::RateLimited {
            retry_after_secs: 30,
        }),
        Response::Error(ErrorReply::Unavailable),
        Response::Error(ErrorReply::FactsNeeded),
        Response::Relayed(RelayEnvelope {
            relay: hwid(),
            body: vec![0, 1, 2],
        }),
        Response::Checked {
            receipt: receipt_for(&check()),
            grant: None,
        }
        .compacted(&check()),
    ]
}

/// The server's receipt for `check`, as the portal signs it.
fn receipt_for(check: &Check) -> Signed<CheckReceipt> {
    Signed::sign(
        &CheckReceipt {
            license_number: check.license_number.clone(),
            hardware_id: check.hardware_id.clone(),
            nonce: check.nonce,
            server_time: UnixTime(1_700_000_000),
            next_check_due: UnixTime(1_700_086_400),
            current_serial: 1,
        },
        &key(),
    )
}

/// The compact answer leaves out what the daemon sent and is rebuilt, byte
/// for byte, into the receipt the server signed; it still verifies, and only
/// for the check it answers.
#[test]
fn a_compact_receipt_is_rebuilt_into_the_signed_one_and_binds_the_same_check() {
    let trusted = TrustedKeys::with([key().public()]);
    let full = Response::Checked {
        receipt: receipt_for(&check()),
        grant: None,
    };
    let compact = full.clone().compacted(&check());
    assert!(
        matches!(compact, Response::CheckedCompact { .. }),
        "{compact:?}"
    );
    let full_bytes = codec::encode_frame(&full).expect("encode").len();
    let compact_bytes = codec::encode_frame(&compact).expect("encode").len();
    assert!(
        full_bytes - compact_bytes > 150,
        "{full_bytes} -> {compact_bytes} bytes"
    );
    let frame = codec::encode_frame(&compact).expect("encode");
    let back = codec::decode_frame::<Response>(&frame).expect("decode");
    assert_eq!(back.clone().expanded(&check()), full);
    let Response::Checked { receipt, .. } = back.clone().expanded(&check()) else {
        panic!("not expanded");
    };
    assert_eq!(
        trusted.verify(&receipt).expect("verifies").nonce,
        check().nonce
    );

    // Rebuilt with another request's nonce or another host, it does not verify.
    let mut other = check();
    other.nonce = Nonce([8; 16]);
    let Response::Checked { receipt, .. } = back.clone().expanded(&other) else {
        panic!("not expanded");
    };
    assert!(trusted.verify(&receipt).is_err());
    other = check();
    other.hardware_id = "602c649d1171ad2e8705074ce97791db".parse().expect("hwid");
    let Response::Checked { receipt, .. } = back.expanded(&other) else {
        panic!("not expanded");
    };
    assert!(trusted.verify(&receipt).is_err());
}

/// A receipt that does not name exactly the check's license, host and nonce
/// cannot be rebuilt by the daemon: the server sends it whole. Anything but a
/// successful check passes unchanged both ways.
#[test]
fn only_a_receipt_the_daemon_can_rebuild_is_compacted() {
    let mut other = check();
    other.nonce = Nonce([8; 16]);
    let answer = Response::Checked {
        receipt: receipt_for(&other),
        grant: Some(grant()),
    };
    assert_eq!(answer.clone().compacted(&check()), answer);
    for r in [
        Response::Refused(refusal()),
        Response::Error(ErrorReply::Unavailable),
    ] {
        assert_eq!(r.clone().compacted(&check()), r);
        assert_eq!(r.clone().expanded(&check()), r);
    }
}

/// Appended, never reordered: the compact check and its answer are variant 7
/// of `Request` and of `Response`, so older servers and daemons read every
/// earlier message as before.
#[test]
fn the_compact_check_and_answer_are_new_variants() {
    let body = codec::encode_body(&Request::CheckCompact(
        CompactCheck::of(&check(), &facts()).expect("compact"),
    ))
    .expect("encode");
    assert_eq!(body[2], 7, "variant index of CheckCompact");
    let compact = Response::Checked {
        receipt: receipt_for(&check()),
        grant: None,
    }
    .compacted(&check());
    let body = codec::encode_body(&compact).expect("encode");
    assert_eq!(body[2], 7, "variant index of CheckedCompact");
}

/// The compact check stands for the check it was made of, in far fewer bytes;
/// a daemon version of another agent cannot be rebuilt, so that check goes
/// whole.
#[test]
fn a_compact_check_is_the_same_check_in_fewer_bytes() {
    let compact = CompactCheck::of(&check(), &facts()).expect("compact");
    assert_eq!(compact.check(), check());
    assert_eq!(compact.facts, facts().digest());
    let whole = codec::encode_frame(&Request::CheckWithFacts(check(), facts()))
        .expect("encode")
        .len();
    let small = codec::encode_frame(&Request::CheckCompact(compact))
        .expect("encode")
        .len();
    assert!(whole - small > 150, "{whole} -> {small} bytes");
    let mut other = check();
    other.daemon_version = "another-agent/1.0".into();
    assert_eq!(CompactCheck::of(&other, &facts()), None);
}

#[test]
fn every_message_round_trips() {
    for req in all_requests() {
        let frame = codec::encode_frame(&req).expect("encode");
        assert_eq!(codec::decode_frame::<Request>(&frame), Ok(req));
    }
    for resp in all_responses() {
        let frame = codec::encode_frame(&resp).expect("encode");
        assert_eq!(codec::decode_frame::<Response>(&frame), Ok(resp));
    }
}

#[test]
fn signed_documents_survive_the_wire_and_still_verify() {
    let trusted = TrustedKeys::with([key().public()]);
    let frame = codec::encode_frame(&Response::Activated {
        grant: grant(),
        receipt: receipt(),
    })
    .expect("encode");
    let Ok(Response::Activated { grant, receipt }) = codec::decode_frame::<Response>(&frame) else {
        panic!("wrong message");
    };
    assert_eq!(trusted.verify(&grant).expect("grant").serial, 1);
    assert_eq!(
        trusted.verify(&receipt).expect("receipt").nonce,
        Nonce([3; 16])
    );
}

#[test]
fn every_single_byte_change_of_a_signed_grant_on_the_wire_is_rejected() {
    let trusted = TrustedKeys::with([key().public()]);
    let frame = codec::encode_frame(&Response::Checked {
        receipt: receipt(),
        grant: Some(grant()),
    })
    .expect("encode");
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x01;
        let accepted = match codec::decode_frame::<Response>(&bad) {
            Ok(Response::Checked {
                receipt: r,
                grant: Some(g),
            }) => {
                let (r, g) = (trusted.verify(&r), trusted.verify(&g));
                r.is_ok()
                    && g.is_ok()
                    && *r.expect("r") == *trusted.verify(&receipt()).expect("orig r")
                    && *g.expect("g") == *trusted.verify(&grant()).expect("orig g")
            }
            _ => false,
        };
        assert!(!accepted, "flipping byte {i} was not noticed");
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    for req in all_requests() {
        let frame = codec::encode_frame(&req).expect("encode");
        for len in 0..frame.len() {
            let err = codec::decode_frame::<Request>(&frame[..len]).expect_err("truncated");
            assert!(
                matches!(err, DecodeError::Truncated { .. }),
                "len {len}: {err:?}"
            );
        }
        // A truncated body behind an honest length prefix is malformed, never a panic.
        let body = codec::encode_body(&req).expect("encode");
        for len in 0..body.len() {
            assert!(codec::decode_body::<Request>(&body[..len]).is_err());
        }
    }
}

#[test]
fn oversize_frames_are_refused_before_allocation() {
    let mut frame = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[0; 16]);
    assert_eq!(
        codec::decode_frame::<Request>(&frame),
        Err(DecodeError::TooLarge {
            len: MAX_FRAME_BYTES + 1,
            max: MAX_FRAME_BYTES
        })
    );
    assert!(matches!(
        codec::split_frame(&frame),
        Err(DecodeError::TooLarge { .. })
    ));
    let huge = Request::Relay(RelayEnvelope {
        relay: hwid(),
        body: vec![0; MAX_FRAME_BYTES],
    });
    assert!(matches!(
        codec::encode_frame(&huge),
        Err(codec::EncodeError::TooLarge { .. })
    ));
}

#[test]
fn a_length_inside_the_body_cannot_force_a_huge_allocation() {
    // Relay body claiming 2^40 bytes: bincode's limit refuses it.
    let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
    body.push(4); // Request::Relay
    body.extend_from_slice(&[32]); // hwid string length 32 (varint)
    body.extend_from_slice(b"502c649d1171ad2e8705074ce97791db");
    body.push(253); // varint marker: u64 follows
    body.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert!(matches!(
        codec::decode_body::<Request>(&body),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn unknown_version_and_unknown_message_are_typed_errors() {
    let mut body = codec::encode_body(&Request::Check(check())).expect("encode");
    body[0..2].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(
        codec::decode_body::<Request>(&body),
        Err(DecodeError::UnsupportedVersion(2))
    );
    body[0..2].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        codec::decode_body::<Request>(&body),
        Err(DecodeError::UnsupportedVersion(0))
    );

    let mut unknown = PROTOCOL_VERSION.to_be_bytes().to_vec();
    unknown.push(99);
    assert!(matches!(
        codec::decode_body::<Request>(&unknown),
        Err(DecodeError::Malformed(_))
    ));

    let mut trailing = codec::encode_body(&Request::Check(check())).expect("encode");
    trailing.push(0);
    assert_eq!(
        codec::decode_body::<Request>(&trailing),
        Err(DecodeError::TrailingBytes(1))
    );
}

#[test]
fn check_frame_bytes_are_stable() {
    // A compatibility promise: daemons in the field send exactly these bytes.
    let frame = codec::encode_frame(&Request::Check(check())).expect("encode");
    expect!["000000560001020a3139323139303030313920353032633634396431313731616432653837303530373463653937373931646201010001021170726f6d6f732d6c6963642f302e312e3007070707070707070707070707070707"].assert_eq(&hex::encode(&frame));
}

#[test]
fn token_never_shows_in_debug_output() {
    let req = &all_requests()[1];
    let debug = format!("{req:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("redacted"));
}

#[tokio::test]
async fn frames_over_a_stream() {
    let (mut a, mut b) = tokio::io::duplex(1024);
    let sent = all_requests();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        for req in &to_send {
            codec::write_message(&mut a, req).await.expect("write");
        }
    });
    for expected in sent {
        let got: Request = codec::read_message(&mut b).await.expect("read");
        assert_eq!(got, expected);
    }
    writer.await.expect("writer");
    assert!(codec::read_frame(&mut b).await.expect("eof").is_none());

    // A stream that stops inside a frame is truncated.
    let (mut a, mut b) = tokio::io::duplex(64);
    use tokio::io::AsyncWriteExt;
    a.write_all(&[0, 0, 0, 9, 0, 1]).await.expect("write");
    drop(a);
    assert!(matches!(
        codec::read_frame(&mut b).await,
        Err(codec::FrameError::Decode(DecodeError::Truncated { .. }))
    ));
}

fn arb_check() -> impl Strategy<Value = Check> {
    (
        any::<[u8; 16]>(),
        any::<Option<u64>>(),
        any::<bool>(),
        any::<(u32, u32)>(),
        "[ -~]{0,40}",
        any::<[u8; 16]>(),
    )
        .prop_map(|(hw, serial, running, (ge, pwa), version, nonce)| Check {
            license_number: number(),
            hardware_id: keys::HardwareId::from_bytes(hw),
            grant_serial: serial,
            runtime: if running {
                RuntimeState::Running
            } else {
                RuntimeState::Stopped
            },
            seats: Seats { ge, pwa },
            daemon_version: version,
            nonce: Nonce(nonce),
        })
}

proptest! {
    #[test]
    fn prop_check_round_trips(c in arb_check()) {
        let frame = codec::encode_frame(&Request::Check(c.clone())).expect("encode");
        prop_assert_eq!(codec::decode_frame::<Request>(&frame), Ok(Request::Check(c)));
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode_frame::<Request>(&bytes);
        let _ = codec::decode_frame::<Response>(&bytes);
        let _ = codec::decode_body::<Request>(&bytes);
        let _ = codec::decode_body::<Response>(&bytes);
    }

    #[test]
    fn prop_relay_body_is_carried_unchanged(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let env = Request::Relay(RelayEnvelope { relay: hwid(), body: body.clone() });
        let frame = codec::encode_frame(&env).expect("encode");
        match codec::decode_frame::<Request>(&frame) {
            Ok(Request::Relay(e)) => prop_assert_eq!(e.body, body),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn every_peer_message_round_trips() {
    let body = codec::encode_body(&Request::Check(check())).expect("encode");
    let requests = vec![
        PeerRequest::Hello {
            hardware_id: hwid(),
            agent: "promos-licd/0.1.0".into(),
        },
        PeerRequest::Forward { body: body.clone() },
        PeerRequest::Collect,
        PeerRequest::Grants(vec![grant(), grant()]),
        PeerRequest::ServerReached,
    ];
    for req in requests {
        let frame = codec::encode_frame(&req).expect("encode");
        assert_eq!(codec::decode_frame::<PeerRequest>(&frame), Ok(req));
    }
    let responses = vec![
        PeerResponse::Hello {
            hardware_id: hwid(),
            agent: "promos-licd/0.1.0".into(),
        },
        PeerResponse::Answer { body: body.clone() },
        PeerResponse::Queued,
        PeerResponse::Collected {
            answers: vec![body.clone(), body],
            grants: vec![grant()],
        },
        PeerResponse::Ack,
        PeerResponse::Error(PeerError::RateLimited {
            retry_after_secs: 60,
        }),
        PeerResponse::Error(PeerError::QueueFull),
        PeerResponse::Error(PeerError::Malformed("x".into())),
    ];
    for resp in responses {
        let frame = codec::encode_frame(&resp).expect("encode");
        assert_eq!(codec::decode_frame::<PeerResponse>(&frame), Ok(resp));
    }
}

#[test]
fn peer_frame_bytes_are_stable() {
    // A compatibility promise between daemons of different versions on one site.
    let frame = codec::encode_frame(&PeerRequest::Collect).expect("encode");
    expect!["00000003000102"].assert_eq(&hex::encode(&frame));
    let frame = codec::encode_frame(&PeerResponse::Queued).expect("encode");
    expect!["00000003000102"].assert_eq(&hex::encode(&frame));
    // Appended: variant 4. Older daemons cannot decode it, so it goes only to
    // peers whose Hello lists the capability.
    let frame = codec::encode_frame(&PeerRequest::ServerReached).expect("encode");
    expect!["00000003000104"].assert_eq(&hex::encode(&frame));
}

#[test]
fn capabilities_are_read_from_the_agent_after_the_version() {
    use wire::peer::{has_capability, CAP_SERVER_REACHED};
    assert!(has_capability(
        "promos-licd/0.1.0 server-reached",
        CAP_SERVER_REACHED
    ));
    assert!(has_capability(
        "promos-licd/0.1.0 x server-reached",
        CAP_SERVER_REACHED
    ));
    assert!(!has_capability("promos-licd/0.1.0", CAP_SERVER_REACHED));
    assert!(
        !has_capability("server-reached", CAP_SERVER_REACHED),
        "the version is not a capability"
    );
    assert!(!has_capability(
        "promos-licd/0.1.0 server-reached-2",
        CAP_SERVER_REACHED
    ));
}

// ---- Offline files (wire::offline) ----

fn offline_check() -> wire::offline::OfflineRequest {
    wire::offline::OfflineRequest::Check(Check {
        license_number: number(),
        hardware_id: hwid(),
        grant_serial: Some(1),
        runtime: RuntimeState::Running,
        seats: Seats { ge: 2, pwa: 0 },
        daemon_version: "promos-licd/0.1.0".into(),
        nonce: Nonce([3; 16]),
    })
}

#[test]
fn offline_request_file_is_pinned_and_round_trips() {
    let req = offline_check();
    let text = wire::offline::write_request(&req).expect("write");
    expect![[r#"
        -----BEGIN PROMOS OFFLINE REQUEST v1-----
        License: 1921900019
        Hardware-ID: 502c649d1171ad2e8705074ce97791db
        Kind: check

        AAEBCjE5MjE5MDAwMTkgNTAyYzY0OWQxMTcxYWQyZTg3MDUwNzRjZTk3NzkxZGIB
        AQACABFwcm9tb3MtbGljZC8wLjEuMAMDAwMDAwMDAwMDAwMDAwM=
        -----END PROMOS OFFLINE REQUEST v1-----
    "#]]
    .assert_eq(&text);
    assert_eq!(wire::offline::read_request(&text), Ok(req.clone()));
    // An email client's CRLF and the text around the block do not matter.
    let mailed = format!(
        "Hello,\r\nhere is the file:\r\n\r\n{}\r\nRegards\r\n",
        text.replace('\n', "\r\n")
    );
    assert_eq!(wire::offline::read_request(&mailed), Ok(req));
}

#[test]
fn an_offline_request_carries_the_hardware_facts_and_one_without_stays_readable() {
    use wire::offline::{read_request, write_request, OfflineFileError, OfflineRequest};
    let facts = wire::HardwareFacts::from_lines([
        "machine-id=11111111111111111111111111111111",
        "cpu=Intel(R) Core(TM) i5",
        "mac=00:11:22:33:44:01",
    ]);
    let req = offline_check().with_facts(&facts);
    assert!(matches!(req, OfflineRequest::CheckWithFacts(_, _)));
    assert_eq!(req.facts(), Some(&facts));
    let text = write_request(&req).expect("write");
    assert!(
        text.contains("Kind: check\nHardware-Facts: 3 hashes\n\n"),
        "{text}"
    );
    assert_eq!(read_request(&text), Ok(req.clone()));
    // The count of hashes is a header like the others: edited, it is noticed.
    let edited = text.replace("3 hashes", "2 hashes");
    assert!(matches!(
        read_request(&edited),
        Err(OfflineFileError::HeaderMismatch {
            field: "Hardware-Facts",
            ..
        })
    ));
    // A request without facts (a daemon older than issue 19) has no such
    // line and reads as before (its text is pinned above).
    let old = write_request(&offline_check()).expect("write");
    assert!(!old.contains("Hardware-Facts"), "{old}");
    assert_eq!(read_request(&old).expect("read").facts(), None);
    // No facts read on the host: the request is written as before.
    assert_eq!(
        offline_check().with_facts(&wire::HardwareFacts::default()),
        offline_check()
    );
}

#[test]
fn offline_files_refuse_damage_with_a_reason() {
    use wire::offline::{read_answer, read_request, write_answer, OfflineFileError};
    let req = offline_check();
    let text = wire::offline::write_request(&req).expect("write");
    // Not a request file at all.
    assert!(matches!(
        read_request("hello"),
        Err(OfflineFileError::NoBegin { .. })
    ));
    // Cut off.
    let cut = &text[..text.len() - 20];
    assert!(matches!(
        read_request(cut),
        Err(OfflineFileError::NoEnd { .. })
    ));
    // A header edited by hand.
    let edited = text.replace("Kind: check", "Kind: activation");
    assert!(matches!(
        read_request(&edited),
        Err(OfflineFileError::HeaderMismatch { field: "Kind", .. })
    ));
    let edited = text.replace("Hardware-ID: 502c", "Hardware-ID: 602c");
    assert!(matches!(
        read_request(&edited),
        Err(OfflineFileError::HeaderMismatch {
            field: "Hardware-ID",
            ..
        })
    ));
    // An unknown header line.
    let edited = text.replace("Kind: check", "Kind: check\nColour: red");
    assert!(matches!(
        read_request(&edited),
        Err(OfflineFileError::BadHeader { .. })
    ));
    // The block damaged.
    let edited = text.replace("AAEB", "AA*B");
    assert!(matches!(
        read_request(&edited),
        Err(OfflineFileError::BadBase64(_))
    ));
    // Too large.
    let big = "x".repeat(wire::offline::MAX_FILE_BYTES + 1);
    assert!(matches!(
        read_request(&big),
        Err(OfflineFileError::TooLarge { .. })
    ));
    // A request is not an answer, and the other way round.
    assert!(matches!(
        read_answer(&text),
        Err(OfflineFileError::NoBegin { .. })
    ));
    let answer = write_answer(
        &req,
        &Response::Checked {
            receipt: receipt(),
            grant: Some(grant()),
        },
    )
    .expect("answer");
    assert!(matches!(
        read_request(&answer),
        Err(OfflineFileError::NoBegin { .. })
    ));
    let read = read_answer(&answer).expect("read answer");
    assert_eq!(read.hardware_id, hwid());
    assert_eq!(read.license_number, number());
    assert!(matches!(read.response, Response::Checked { .. }));
    let edited = answer.replace("Kind: checked", "Kind: refused");
    assert!(matches!(
        read_answer(&edited),
        Err(OfflineFileError::HeaderMismatch { field: "Kind", .. })
    ));
}

proptest! {
    /// Reading any text as an offline file never panics.
    #[test]
    fn offline_read_never_panics(text in ".{0,400}") {
        let _ = wire::offline::read_request(&text);
        let _ = wire::offline::read_answer(&text);
    }
}
