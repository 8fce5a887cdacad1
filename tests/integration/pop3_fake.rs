//! Faults a real server will not produce, from a scripted fake server: dropped connections,
//! garbage and overlong lines, missing UIDL, duplicate UIDLs, busy mailboxes, capabilities that
//! appear only after login, lower-case CAPA, endless and stalled responses, SASL edge cases.
//! None of them may panic or hang.

use std::time::Duration;

use popbackup::pop3::{
    self, AuthMethod, Credentials, ErrorClass, Fetch, FetchError, Limits, Pop3Error, Reply,
    RespCode, Secret, ServerOptions, Session, TlsMode, Transport,
};

use crate::support::fake_server::{
    FakeServer, Step, expect, greeting_and_capa, multiline, send, user_pass_login,
};

fn options(port: u16) -> ServerOptions {
    let mut options = ServerOptions::new("127.0.0.1", TlsMode::None);
    options.port = port;
    options.danger_allow_plaintext = true;
    options.connect_timeout = Duration::from_secs(5);
    options.io_timeout = Duration::from_secs(5);
    options
}

fn bob(method: AuthMethod) -> Credentials {
    Credentials::new("bob", Secret::new("secret"), method)
}

/// Runs `script` and logs in as bob with USER/PASS.
fn session(
    script: Vec<Step>,
    tweak: impl FnOnce(&mut ServerOptions),
) -> (Result<Session<Transport>, Pop3Error>, FakeServer) {
    let server = FakeServer::start(script);
    let mut opts = options(server.port);
    tweak(&mut opts);
    (pop3::open_session(&opts, &bob(AuthMethod::User)), server)
}

fn script(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

fn retr_reply(body: &[u8]) -> Step {
    let mut wire = b"+OK message follows\r\n".to_vec();
    wire.extend_from_slice(&popbackup::pop3::dotstuff::stuff(body));
    Step::Send(wire)
}

#[test]
fn connection_dropped_mid_retr_is_a_temporary_error() {
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        user_pass_login(&["UIDL"]),
        vec![
            expect("RETR 1"),
            Step::Send(b"+OK\r\nSubject: half\r\n\r\npart of the bo".to_vec()),
            Step::Close,
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    let mut sink = Vec::new();
    let err = match session.retr_to(1, &mut sink).unwrap_err() {
        FetchError::Pop3(e) => e,
        FetchError::Sink(e) => panic!("blamed the sink: {e}"),
    };
    assert!(matches!(err, Pop3Error::Closed { .. }), "{err:?}");
    assert!(err.is_temporary());
    // The session is out of step now and says so instead of reading garbage.
    assert!(matches!(session.noop().unwrap_err(), Pop3Error::Poisoned));
    server.finish_ok();
}

#[test]
fn garbage_instead_of_a_greeting_is_a_protocol_error() {
    let server = FakeServer::start(vec![
        send("HTTP/1.1 400 Bad Request"),
        Step::Stall(Duration::from_millis(200)),
    ]);
    let err = pop3::connect(&options(server.port)).err().unwrap();
    assert!(matches!(err, Pop3Error::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP/1.1 400"), "{err}");
    assert_eq!(err.class(), ErrorClass::Protocol);
    server.finish();
}

#[test]
fn an_overlong_status_line_is_refused_with_bounded_memory() {
    let server = FakeServer::start(vec![Step::SendForever {
        chunk: vec![b'+'; 64 * 1024],
        max: 64 << 20,
    }]);
    let err = pop3::connect(&options(server.port)).err().unwrap();
    assert!(matches!(err, Pop3Error::LineTooLong { .. }), "{err:?}");
    let transcript = server.finish();
    assert!(
        transcript.failure.is_none(),
        "client kept reading: {:?}",
        transcript.failure
    );
}

#[test]
fn garbage_in_a_listing_is_reported_with_the_line() {
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        user_pass_login(&["UIDL"]),
        vec![
            expect("LIST"),
            Step::Send(multiline("+OK", &["1 100", "two hundred"])),
        ],
        vec![expect("NOOP"), send("+OK")],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    let err = session.list().unwrap_err();
    assert!(err.to_string().contains("two hundred"), "{err}");
    // The listing was read to its end, so the session is still usable.
    session.noop().unwrap();
    server.finish_ok();
}

#[test]
fn an_overlong_listing_line_is_refused() {
    let long = "9".repeat(20_000);
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        user_pass_login(&["UIDL"]),
        vec![
            expect("UIDL"),
            Step::Send(multiline("+OK", &[&format!("1 {long}")])),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let err = session.unwrap().uidl().unwrap_err();
    assert!(
        matches!(
            err,
            Pop3Error::LineTooLong {
                command: "UIDL",
                ..
            }
        ),
        "{err:?}"
    );
    server.finish();
}

#[test]
fn a_server_without_uidl_says_so() {
    let s = script(vec![
        greeting_and_capa(&["USER", "TOP"]),
        user_pass_login(&["TOP"]),
        vec![expect("UIDL"), send("-ERR command not implemented")],
        vec![expect("STAT"), send("+OK 1 10")],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    assert!(!session.capabilities().uidl());
    let err = session.uidl().unwrap_err();
    assert!(
        matches!(
            err,
            Pop3Error::Server {
                command: "UIDL",
                code: None,
                ..
            }
        ),
        "{err:?}"
    );
    // A -ERR is an answer, not a desync: the session goes on.
    assert_eq!(session.stat().unwrap().count, 1);
    server.finish_ok();
}

#[test]
fn duplicate_uidls_are_kept() {
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        user_pass_login(&["UIDL"]),
        vec![
            expect("UIDL"),
            Step::Send(multiline("+OK", &["1 same", "2 other", "3 same"])),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let uidl = session.unwrap().uidl().unwrap();
    let ids: Vec<(u32, &str)> = uidl.iter().map(|e| (e.msg, e.uidl.as_str())).collect();
    assert_eq!(ids, vec![(1, "same"), (2, "other"), (3, "same")]);
    server.finish();
}

#[test]
fn in_use_is_a_temporary_failure() {
    let s = script(vec![
        greeting_and_capa(&["USER", "RESP-CODES"]),
        vec![
            expect("USER bob"),
            send("+OK"),
            expect("PASS secret"),
            send("-ERR [IN-USE] mailbox locked by another session"),
        ],
        vec![expect("QUIT"), send("+OK")],
    ]);
    let (session, server) = session(s, |_| {});
    let err = session.err().unwrap();
    assert_eq!(err.resp_code(), Some(&RespCode::InUse));
    assert!(err.is_temporary());
    assert!(err.to_string().contains("[IN-USE]"), "{err}");
    server.finish_ok();
}

#[test]
fn auth_and_sys_perm_are_permanent() {
    for (line, class) in [
        ("-ERR [AUTH] invalid credentials", ErrorClass::Auth),
        ("-ERR [SYS/PERM] account disabled", ErrorClass::Protocol),
        ("-ERR [SYS/TEMP] storage unavailable", ErrorClass::Temporary),
        ("-ERR [LOGIN-DELAY] wait 5 minutes", ErrorClass::Temporary),
        ("-ERR wrong password", ErrorClass::Auth),
    ] {
        let s = script(vec![
            greeting_and_capa(&["USER", "RESP-CODES"]),
            vec![
                expect("USER bob"),
                send("+OK"),
                expect("PASS secret"),
                send(line),
                expect("QUIT"),
                send("+OK"),
            ],
        ]);
        let (session, server) = session(s, |_| {});
        let err = session.err().unwrap();
        assert_eq!(err.class(), class, "{line}");
        server.finish();
    }
}

#[test]
fn pipelining_announced_only_after_login_is_used() {
    // The script reads all three RETRs before answering any: a serial client would stall here
    // and fail with a timeout.
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        user_pass_login(&["UIDL", "TOP", "PIPELINING"]),
        vec![expect("RETR 1"), expect("RETR 2"), expect("RETR 3")],
        vec![
            retr_reply(b"one\r\n"),
            retr_reply(b".two\r\n"),
            retr_reply(b"three\r\n"),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    assert!(session.pipelining());
    let requests: Vec<Fetch> = (1..=3).map(|n| Fetch::retr(n, 10)).collect();
    let bodies = fetch_all(&mut session, &requests);
    assert_eq!(
        bodies,
        vec![
            b"one\r\n".to_vec(),
            b".two\r\n".to_vec(),
            b"three\r\n".to_vec()
        ]
    );
    server.finish_ok();
}

fn fetch_all(session: &mut Session<Transport>, requests: &[Fetch]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    session
        .fetch(requests, |_, reply| -> std::io::Result<()> {
            match reply {
                Reply::Body(body) => {
                    let mut buf = Vec::new();
                    std::io::copy(body, &mut buf)?;
                    bodies.push(buf);
                }
                Reply::Refused(e) => panic!("refused: {e}"),
            }
            Ok(())
        })
        .unwrap();
    bodies
}

#[test]
fn without_pipelining_commands_go_one_at_a_time() {
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        user_pass_login(&["UIDL"]),
        vec![
            expect("RETR 1"),
            Step::ExpectSilence(Duration::from_millis(150)),
            retr_reply(b"a\r\n"),
        ],
        vec![
            expect("RETR 2"),
            Step::ExpectSilence(Duration::from_millis(150)),
            retr_reply(b"b\r\n"),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    assert!(!session.pipelining());
    let bodies = fetch_all(&mut session, &[Fetch::retr(1, 3), Fetch::retr(2, 3)]);
    assert_eq!(bodies.len(), 2);
    server.finish_ok();
}

#[test]
fn the_pipeline_window_bounds_commands_and_bytes() {
    // Window of 2 commands: RETR 3 may only be sent after RETR 1 has been answered.
    let s = script(vec![
        greeting_and_capa(&["USER", "PIPELINING"]),
        user_pass_login(&["PIPELINING"]),
        vec![
            expect("RETR 1"),
            expect("RETR 2"),
            Step::ExpectSilence(Duration::from_millis(150)),
        ],
        vec![
            retr_reply(b"1\r\n"),
            expect("RETR 3"),
            Step::ExpectSilence(Duration::from_millis(150)),
        ],
        vec![retr_reply(b"2\r\n"), retr_reply(b"3\r\n")],
        // Byte window of 100: a 90-byte message and a 20-byte one are not in flight together.
        vec![
            expect("RETR 4"),
            Step::ExpectSilence(Duration::from_millis(150)),
            retr_reply(b"4\r\n"),
        ],
        vec![expect("RETR 5"), retr_reply(b"5\r\n")],
    ]);
    let (session, server) = session(s, |o| {
        o.session.window = pop3::PipelineWindow {
            commands: 2,
            bytes: 100,
        };
    });
    let mut session = session.unwrap();
    let small: Vec<Fetch> = (1..=3).map(|n| Fetch::retr(n, 1)).collect();
    assert_eq!(fetch_all(&mut session, &small).len(), 3);
    let big = [Fetch::retr(4, 90), Fetch::retr(5, 20)];
    assert_eq!(fetch_all(&mut session, &big).len(), 2);
    server.finish_ok();
}

#[test]
fn a_refused_retr_in_a_pipeline_does_not_stop_the_batch() {
    let s = script(vec![
        greeting_and_capa(&["USER", "PIPELINING"]),
        user_pass_login(&["PIPELINING"]),
        vec![
            expect("RETR 1"),
            expect("RETR 2"),
            send("-ERR no such message"),
            retr_reply(b"two\r\n"),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    let mut seen = Vec::new();
    session
        .fetch(
            &[Fetch::retr(1, 1), Fetch::retr(2, 1)],
            |req, reply| -> std::io::Result<()> {
                match reply {
                    Reply::Body(body) => {
                        let mut buf = Vec::new();
                        std::io::copy(body, &mut buf)?;
                        seen.push((req.msg, Ok(buf)));
                    }
                    Reply::Refused(e) => seen.push((req.msg, Err(e.to_string()))),
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(matches!(&seen[0], (1, Err(text)) if text.contains("no such message")));
    assert!(matches!(&seen[1], (2, Ok(body)) if body == b"two\r\n"));
    server.finish();
}

#[test]
fn lower_case_capa_is_understood() {
    let s = script(vec![
        greeting_and_capa(&["user", "sasl plain login"]),
        vec![
            expect("AUTH PLAIN AGJvYgBzZWNyZXQ="),
            send("+OK"),
            expect("CAPA"),
        ],
        vec![Step::Send(multiline("+OK", &["top", "uidl", "pipelining"]))],
    ]);
    let server = FakeServer::start(s);
    let session = pop3::open_session(&options(server.port), &bob(AuthMethod::Auto)).unwrap();
    assert!(session.pipelining());
    assert!(session.capabilities().top() && session.capabilities().uidl());
    server.finish_ok();
}

#[test]
fn an_endless_message_hits_the_size_limit() {
    let s = script(vec![
        greeting_and_capa(&["USER"]),
        user_pass_login(&[]),
        vec![
            expect("RETR 1"),
            send("+OK"),
            Step::SendForever {
                chunk: b"endless line of data\r\n".repeat(1000),
                max: 512 << 20,
            },
        ],
    ]);
    let (session, server) = session(s, |o| {
        o.session.limits = Limits {
            max_message_bytes: 1 << 20,
            ..Limits::default()
        };
    });
    let err = session
        .unwrap()
        .retr_to(1, &mut std::io::sink())
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Pop3(Pop3Error::ResponseTooLarge {
                command: "RETR",
                ..
            })
        ),
        "{err:?}"
    );
    server.finish_ok();
}

#[test]
fn an_endless_listing_hits_the_listing_limit() {
    let s = script(vec![
        greeting_and_capa(&["USER"]),
        user_pass_login(&[]),
        vec![
            expect("UIDL"),
            send("+OK"),
            Step::SendForever {
                chunk: b"1 abc\r\n".repeat(1000),
                max: 512 << 20,
            },
        ],
    ]);
    let (session, server) = session(s, |o| {
        o.session.limits = Limits {
            max_listing_bytes: 1 << 20,
            ..Limits::default()
        };
    });
    let err = session.unwrap().uidl().unwrap_err();
    assert!(
        matches!(
            err,
            Pop3Error::ResponseTooLarge {
                command: "UIDL",
                ..
            }
        ),
        "{err:?}"
    );
    server.finish_ok();
}

#[test]
fn a_response_that_never_ends_times_out() {
    let s = script(vec![
        greeting_and_capa(&["USER"]),
        user_pass_login(&[]),
        vec![
            expect("RETR 1"),
            send("+OK"),
            send("Subject: stalled"),
            Step::Stall(Duration::from_secs(3)),
        ],
    ]);
    let (session, server) = session(s, |o| o.io_timeout = Duration::from_millis(500));
    let started = std::time::Instant::now();
    let err = session.unwrap().retr_to(1, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, FetchError::Pop3(Pop3Error::Timeout { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    server.finish();
}

#[test]
fn a_sink_error_is_reported_as_such_and_ends_the_session() {
    let s = script(vec![
        greeting_and_capa(&["USER"]),
        user_pass_login(&[]),
        vec![
            expect("RETR 1"),
            retr_reply(b"data\r\n"),
            Step::Stall(Duration::from_millis(100)),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    let err = session
        .fetch(&[Fetch::retr(1, 1)], |_, _| Err::<(), _>("disk full"))
        .unwrap_err();
    assert!(matches!(err, FetchError::Sink("disk full")));
    assert!(matches!(session.noop().unwrap_err(), Pop3Error::Poisoned));
    server.finish();
}

#[test]
fn sasl_login_answers_both_prompts() {
    let s = script(vec![
        greeting_and_capa(&["SASL LOGIN"]),
        vec![
            expect("AUTH LOGIN"),
            send("+ VXNlcm5hbWU6"),
            expect("Ym9i"),
            send("+ UGFzc3dvcmQ6"),
            expect("c2VjcmV0"),
        ],
        vec![
            send("+OK"),
            expect("CAPA"),
            send("-ERR no CAPA after login"),
        ],
    ]);
    let server = FakeServer::start(s);
    let session = pop3::open_session(&options(server.port), &bob(AuthMethod::Auto)).unwrap();
    // CAPA refused after login: the pre-login capabilities stand.
    assert!(session.capabilities().has_sasl("LOGIN"));
    server.finish_ok();
}

#[test]
fn a_long_xoauth2_token_is_sent_after_an_empty_challenge() {
    let token = "t".repeat(400);
    let creds = Credentials::new(
        "user@example.com",
        Secret::new(token.clone()),
        AuthMethod::Xoauth2,
    );
    let ir = popbackup::pop3::auth::SaslExchange::xoauth2(&creds)
        .initial
        .expose()
        .to_string();
    let s = script(vec![
        greeting_and_capa(&["SASL XOAUTH2"]),
        vec![
            expect("AUTH XOAUTH2"),
            send("+ "),
            Step::Expect(ir),
            send("+OK"),
            expect("CAPA"),
        ],
        vec![Step::Send(multiline("+OK", &["UIDL"]))],
    ]);
    let server = FakeServer::start(s);
    pop3::open_session(&options(server.port), &creds).unwrap();
    let t = server.finish_ok();
    assert!(
        t.received
            .iter()
            .all(|l| l.len() <= 255 || !l.starts_with("AUTH"))
    );
}

#[test]
fn a_rejected_bearer_token_answers_the_error_challenge_and_fails_as_auth() {
    // Google's failure flow: a base64 JSON challenge, an empty answer, then -ERR.
    let creds = Credentials::new(
        "user@example.com",
        Secret::new("expired-token"),
        AuthMethod::Xoauth2,
    );
    let s = script(vec![
        greeting_and_capa(&["SASL XOAUTH2", "RESP-CODES"]),
        vec![
            Step::ReadLine,
            send("+ eyJzdGF0dXMiOiI0MDAifQ=="),
            expect(""),
            send("-ERR [AUTH] Invalid credentials"),
        ],
        vec![expect("QUIT"), send("+OK")],
    ]);
    let server = FakeServer::start(s);
    let err = pop3::open_session(&options(server.port), &creds)
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::Auth);
    assert!(!format!("{err} {err:?}").contains("expired-token"));
    server.finish_ok();
}

#[test]
fn a_password_echoed_by_the_server_never_reaches_the_error() {
    let s = script(vec![
        greeting_and_capa(&["USER"]),
        vec![
            expect("USER bob"),
            send("+OK"),
            expect("PASS secret"),
            send("-ERR bad password: secret"),
        ],
        vec![expect("QUIT"), send("+OK")],
    ]);
    let (session, server) = session(s, |_| {});
    let err = session.err().unwrap();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert!(shown.contains("<redacted>"));
    server.finish();
}

#[test]
fn a_password_echoed_after_login_never_reaches_an_error() {
    // A server that puts what it was sent into later replies: STAT's -ERR, and a UIDL line.
    let s = script(vec![
        greeting_and_capa(&["USER", "UIDL"]),
        vec![
            expect("USER bob"),
            send("+OK"),
            expect("PASS secret"),
            send("+OK"),
            expect("CAPA"),
            send("-ERR"),
            expect("STAT"),
            send("-ERR [SYS/PERM] your password secret has expired"),
            expect("UIDL"),
            send("+OK\r\n1 ok\r\nsecret\r\n."),
            expect("QUIT"),
            send("+OK"),
        ],
    ]);
    let (session, server) = session(s, |_| {});
    let mut session = session.unwrap();
    for err in [session.stat().unwrap_err(), session.uidl().unwrap_err()] {
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    session.quit().unwrap();
    server.finish();
}

#[test]
fn a_sasl_response_echoed_by_the_server_never_reaches_the_error() {
    // AUTH PLAIN's initial response is the password in base64: as good as the password.
    let plain = "AGJvYgBzZWNyZXQ=";
    let s = script(vec![
        greeting_and_capa(&["SASL PLAIN"]),
        vec![
            expect(&format!("AUTH PLAIN {plain}")),
            send(&format!("-ERR [AUTH] cannot decode {plain}")),
            expect("QUIT"),
            send("+OK"),
        ],
    ]);
    let server = FakeServer::start(s);
    let err = pop3::open_session(&options(server.port), &bob(AuthMethod::Plain))
        .err()
        .unwrap();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(plain), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    server.finish();
}

#[test]
fn apop_uses_the_greeting_timestamp() {
    let creds = Credentials::new("mrose", Secret::new("tanstaaf"), AuthMethod::Apop);
    let s = vec![
        send("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
        expect("CAPA"),
        send("-ERR unknown command"),
        expect("APOP mrose c4c9334bac560ecc979e58001b3e22fb"),
        send("+OK maildrop has 1 message"),
        expect("CAPA"),
        send("-ERR unknown command"),
    ];
    let server = FakeServer::start(s);
    pop3::open_session(&options(server.port), &creds).unwrap();
    server.finish_ok();
}

#[test]
fn cr_lf_in_the_user_name_is_refused_before_sending() {
    let s = script(vec![
        greeting_and_capa(&["USER"]),
        vec![Step::ReadLine, Step::ReadLine],
    ]);
    let server = FakeServer::start(s);
    let creds = Credentials::new("bob\r\nDELE 1", Secret::new("secret"), AuthMethod::User);
    let err = pop3::open_session(&options(server.port), &creds)
        .err()
        .unwrap();
    assert!(matches!(err, Pop3Error::InvalidArgument { .. }));
    let t = server.finish();
    assert!(
        !t.received_any("USER") && !t.received_any("DELE"),
        "{:?}",
        t.received
    );
}
