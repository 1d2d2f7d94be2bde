//! Real QUIC on 127.0.0.1:0: the daemon flows end to end.

use crate::util::{Answer, TestServer, START};
use keys::{Binding, Driver, Entitlements, Protection};
use portal::admin::AdminRequest;
use portal::quic::client;
use wire::{ErrorReply, Nonce, RefusalReason, RelayEnvelope, Request, Response, RuntimeState};

#[tokio::test]
async fn activate_then_check() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let host = server.daemon(1).await;

    let answer = host.activate(&number, &token).await;
    let Answer::Granted {
        grant: Some(grant),
        receipt,
    } = &answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!(grant.license_number, number);
    assert_eq!(grant.binding, Binding::HardwareId(host.hardware_id.clone()));
    assert_eq!(grant.entitlements, Entitlements::standard_base());
    assert_eq!(grant.serial, 1);
    assert_eq!(receipt.server_time, START);
    assert_eq!(receipt.current_serial, 1);

    // A day later: the check is answered with server time and no new grant.
    server.clock.advance_secs(86_400);
    let answer = host.check(&number, Some(1), RuntimeState::Running).await;
    let Answer::Granted {
        grant: None,
        receipt,
    } = &answer
    else {
        panic!("{answer:?}")
    };
    assert_eq!(receipt.server_time, START.plus_days(1));

    // A daemon that lost its cache gets the current grant with its check.
    let answer = host.check(&number, None, RuntimeState::Running).await;
    assert_eq!(answer.grant().map(|g| g.serial), Some(1));

    // The check was recorded: last seen, running, from where.
    let seen = server
        .store
        .last_check_in(&number)
        .expect("read")
        .expect("check-in");
    assert!(seen.running);
    assert_eq!(seen.hardware_id, host.hardware_id);
    assert!(seen.from.starts_with("127.0.0.1:"), "{}", seen.from);

    // Activating again on the same host is idempotent.
    let again = host.activate(&number, &token).await;
    assert_eq!(again.grant().map(|g| g.serial), Some(1));
    server.stop().await;
}

#[tokio::test]
async fn wrong_token_unknown_and_unpaid_licenses_are_refused() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let host = server.daemon(1).await;
    let mut wrong = token.clone().into_bytes();
    wrong[0] = if wrong[0] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    assert_eq!(
        host.activate(&number, &wrong).await.refusal(),
        Some(RefusalReason::WrongToken)
    );

    let unknown = keys::LicenseNumber::from_body(123_456_789).expect("number");
    assert_eq!(
        host.activate(&unknown, &token).await.refusal(),
        Some(RefusalReason::UnknownLicense)
    );

    let (unpaid, unpaid_token) = server.license(Protection::SoftDongle, false);
    assert_eq!(
        host.activate(&unpaid, &unpaid_token).await.refusal(),
        Some(RefusalReason::NotYetActivated)
    );
    server
        .admin(AdminRequest::MarkPaid {
            number: unpaid.clone(),
            mutation: None,
        })
        .expect("mark paid");
    assert!(host
        .activate(&unpaid, &unpaid_token)
        .await
        .grant()
        .is_some());

    // None of these attempts bound the license.
    let l = server
        .store
        .license(&number)
        .expect("read")
        .expect("license");
    assert_eq!(l.binding, None);
    server.stop().await;
}

#[tokio::test]
async fn second_host_is_refused_until_reset_then_first_host_is_refused() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let first = server.daemon(1).await;
    let second = server.daemon(2).await;

    assert_eq!(
        first
            .activate(&number, &token)
            .await
            .grant()
            .map(|g| g.serial),
        Some(1)
    );
    assert_eq!(
        second.activate(&number, &token).await.refusal(),
        Some(RefusalReason::BoundToAnotherHost)
    );
    assert_eq!(
        second
            .check(&number, None, RuntimeState::Running)
            .await
            .refusal(),
        Some(RefusalReason::BoundToAnotherHost)
    );

    server
        .admin(AdminRequest::Reset {
            number: number.clone(),
        })
        .expect("reset");
    let answer = second.activate(&number, &token).await;
    let grant = answer.grant().expect("second host activates");
    assert_eq!(
        grant.binding,
        Binding::HardwareId(second.hardware_id.clone())
    );
    assert_eq!(grant.serial, 3, "the reset reserved serial 2");

    assert_eq!(
        first
            .check(&number, Some(1), RuntimeState::Running)
            .await
            .refusal(),
        Some(RefusalReason::LicenseWasReset)
    );
    assert_eq!(
        first.activate(&number, &token).await.refusal(),
        Some(RefusalReason::BoundToAnotherHost)
    );
    assert!(matches!(
        second.check(&number, Some(3), RuntimeState::Running).await,
        Answer::Granted { grant: None, .. }
    ));

    let audit = server.store.audit(Some(&number), 100).expect("audit");
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"binding.reset"), "{actions:?}");
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "binding.activated")
            .count(),
        2,
        "{actions:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn upgrade_reaches_the_daemon_at_its_next_check_and_needs_a_stopped_runtime() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let host = server.daemon(1).await;
    assert!(host.activate(&number, &token).await.grant().is_some());

    let mut adds = Entitlements::none();
    adds.drivers.insert(Driver::SaiaPcd, 6_000);
    adds.pwa_users = 4;

    // Running: no upgrade.
    host.check(&number, Some(1), RuntimeState::Running).await;
    let err = server
        .admin(AdminRequest::Upgrade {
            number: number.clone(),
            adds: adds.clone(),
            paid: true,
        })
        .expect_err("running");
    assert!(err.contains("stopped"), "{err}");

    // Stopped: ordered, then paid; the next check brings the new grant.
    host.check(&number, Some(1), RuntimeState::Stopped).await;
    server
        .admin(AdminRequest::Upgrade {
            number: number.clone(),
            adds,
            paid: false,
        })
        .expect("upgrade");
    assert!(matches!(
        host.check(&number, Some(1), RuntimeState::Stopped).await,
        Answer::Granted { grant: None, .. }
    ));
    server
        .admin(AdminRequest::MarkPaid {
            number: number.clone(),
            mutation: None,
        })
        .expect("paid");
    let answer = host.check(&number, Some(1), RuntimeState::Stopped).await;
    let grant = answer.grant().expect("new grant");
    assert_eq!(grant.serial, 2);
    assert_eq!(grant.entitlements.driver(Driver::SaiaPcd), 6_100);
    assert_eq!(grant.entitlements.pwa_users, 5);
    assert!(grant.entitlements.covers(&Entitlements::standard_base()));
    server.stop().await;
}

#[tokio::test]
async fn engineering_expires_after_three_years() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::Engineering, true);
    let host = server.daemon(9).await;
    let answer = host.activate(&number, &token).await;
    let grant = answer.grant().expect("grant");
    assert_eq!(grant.valid_until, Some(START.plus_days(3 * 365 + 1)));
    assert_eq!(grant.entitlements, Entitlements::engineering());
    server.clock.advance_secs((3 * 365 + 1) * 86_400);
    assert_eq!(
        host.check(&number, Some(1), RuntimeState::Running)
            .await
            .refusal(),
        Some(RefusalReason::Expired)
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_frames_cost_only_their_stream_or_connection() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let host = server.daemon(1).await;

    // Garbage: answered as malformed on that stream.
    let answer = client::raw(&host.conn, b"\x00\x00\x00\x04\x00\x01\xff\xff")
        .await
        .expect("answer");
    let response: Response = wire::codec::decode_frame(&answer).expect("frame");
    assert!(
        matches!(response, Response::Error(ErrorReply::Malformed(_))),
        "{response:?}"
    );

    // A future protocol version: told which versions the server speaks.
    let mut frame = wire::codec::encode_frame(&Request::Hello(wire::Hello {
        min_version: 1,
        max_version: 1,
        agent: "x".into(),
    }))
    .expect("frame");
    frame[4..6].copy_from_slice(&99u16.to_be_bytes());
    let response: Response =
        wire::codec::decode_frame(&client::raw(&host.conn, &frame).await.expect("answer"))
            .expect("frame");
    assert_eq!(
        response,
        Response::Error(ErrorReply::UnsupportedProtocolVersion { min: 1, max: 1 })
    );

    // The same connection still works.
    assert!(host.activate(&number, &token).await.grant().is_some());

    // A stream longer than a frame is reset.
    let huge = vec![0u8; wire::MAX_FRAME_BYTES + 100];
    assert!(client::raw(&host.conn, &huge).await.is_err());

    // Three malformed requests close the connection...
    for _ in 0..3 {
        let _ = client::raw(&host.conn, b"\xff\xff\xff\xff").await;
    }
    let closed = host.conn.closed().await;
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );

    // ...and nobody else notices.
    let other = server.daemon(2).await;
    assert_eq!(
        other.activate(&number, &token).await.refusal(),
        Some(RefusalReason::BoundToAnotherHost)
    );

    // A client without our ALPN does not get a connection; the server carries on.
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    let mut tls = rustls::ClientConfig::builder_with_provider(portal::quic::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(
            client::PinnedCert::new(&server.fingerprint).expect("pin"),
        ))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"something-else".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic");
    let result = ep
        .connect_with(
            quinn::ClientConfig::new(std::sync::Arc::new(quic)),
            server.addr,
            "localhost",
        )
        .expect("connect")
        .await;
    assert!(result.is_err());
    let again = server.daemon(3).await;
    assert_eq!(
        again
            .check(&number, None, RuntimeState::Running)
            .await
            .refusal(),
        Some(RefusalReason::BoundToAnotherHost)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_certificate_pin_is_refused_by_the_client() {
    let server = TestServer::start().await;
    let ep = client::endpoint(&"00".repeat(32)).expect("endpoint");
    assert!(client::connect(&ep, server.addr).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn relayed_requests_are_answered_for_the_original_host() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let origin = server.daemon(1).await;
    let relay = server.daemon(2).await;
    let nonce = Nonce::random();
    let inner = Request::Activate(wire::Activate {
        license_number: number.clone(),
        token: wire::Token(token),
        hardware_id: origin.hardware_id.clone(),
        daemon_version: "x".into(),
        nonce,
    });
    let body = wire::codec::encode_body(&inner).expect("body");
    let outer = Request::Relay(RelayEnvelope {
        relay: relay.hardware_id.clone(),
        body,
    });
    let response = client::request(&relay.conn, &outer).await.expect("relayed");
    let Response::Relayed(envelope) = response else {
        panic!("{response:?}")
    };
    let inner_response: Response = wire::codec::decode_body(&envelope.body).expect("inner");
    let answer = origin.verify(inner_response, nonce);
    let grant = answer.grant().expect("grant for the origin host");
    assert_eq!(
        grant.binding,
        Binding::HardwareId(origin.hardware_id.clone())
    );
    let seen = server.store.audit(Some(&number), 10).expect("audit");
    assert!(
        seen.iter()
            .any(|e| e.actor.to_string().contains("via relay")),
        "{seen:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn activation_attempts_are_limited_per_source() {
    let server = TestServer::start_with(|c| c.quic.activations_per_source_per_minute = 3).await;
    let (number, _) = server.license(Protection::SoftDongle, true);
    let host = server.daemon(1).await;
    for _ in 0..3 {
        assert_eq!(
            host.activate(&number, "guess").await.refusal(),
            Some(RefusalReason::WrongToken)
        );
    }
    assert!(matches!(
        host.activate(&number, "guess").await,
        Answer::Error(ErrorReply::RateLimited { .. })
    ));
    // Checks are not activations.
    assert!(host
        .check(&number, None, RuntimeState::Running)
        .await
        .refusal()
        .is_some());
    server.clock.advance_secs(60);
    assert_eq!(
        host.activate(&number, "guess").await.refusal(),
        Some(RefusalReason::WrongToken)
    );
    server.stop().await;
}

#[tokio::test]
async fn hard_dongle_license_binds_to_the_dongle_serial() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::HardDongle, true);
    let host = server.daemon(4).await;
    assert_eq!(
        host.activate(&number, &token).await.refusal(),
        Some(RefusalReason::NotYetActivated)
    );
    server
        .admin(AdminRequest::SetDongle {
            number: number.clone(),
            serial: "DG-0042".parse().expect("serial"),
        })
        .expect("serial");
    let l = server
        .store
        .license(&number)
        .expect("read")
        .expect("license");
    let current = server
        .store
        .current_grant(&l)
        .expect("read")
        .expect("grant for the file");
    let verified = server.trusted.verify(&current).expect("valid");
    assert_eq!(
        verified.binding,
        Binding::DongleSerial("DG-0042".parse().expect("serial"))
    );
    // The downloadable license file round-trips through keys::file.
    let file = keys::file::render(&verified);
    assert!(keys::file::parse(file.as_bytes(), &server.trusted).is_ok());
    let err = server
        .admin(AdminRequest::Reset {
            number: number.clone(),
        })
        .expect_err("never reset");
    assert!(err.contains("cannot be reset"), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn hello_and_deactivate_give_the_binding_back() {
    let server = TestServer::start().await;
    let (number, token) = server.license(Protection::SoftDongle, true);
    let first = server.daemon(1).await;
    let hello = Request::Hello(wire::Hello {
        min_version: 1,
        max_version: 1,
        agent: "promos-licd/test".into(),
    });
    let answer = client::request(&first.conn, &hello).await.expect("hello");
    assert!(
        matches!(answer, Response::Hello { version: 1, ref agent } if agent.starts_with("pls/")),
        "{answer:?}"
    );

    assert!(first.activate(&number, &token).await.grant().is_some());
    let deactivate = |token: &str| {
        Request::Deactivate(wire::Deactivate {
            license_number: number.clone(),
            token: wire::Token(token.to_owned()),
            hardware_id: first.hardware_id.clone(),
            nonce: Nonce::random(),
        })
    };
    let answer = client::request(&first.conn, &deactivate("wrong"))
        .await
        .expect("answer");
    assert!(matches!(answer, Response::Refused(_)), "{answer:?}");
    let answer = client::request(&first.conn, &deactivate(&token))
        .await
        .expect("answer");
    let Response::Deactivated { receipt } = answer else {
        panic!("{answer:?}")
    };
    let receipt = server.trusted.verify(&receipt).expect("signed");
    assert_eq!(receipt.hardware_id, first.hardware_id);
    assert_eq!(
        server
            .store
            .license(&number)
            .expect("read")
            .expect("license")
            .binding,
        None
    );

    // Another host may take the license; the first one was not "reset".
    let second = server.daemon(2).await;
    assert!(second.activate(&number, &token).await.grant().is_some());
    assert_eq!(
        first
            .check(&number, Some(1), RuntimeState::Running)
            .await
            .refusal(),
        Some(RefusalReason::BoundToAnotherHost)
    );
    server.stop().await;
}
