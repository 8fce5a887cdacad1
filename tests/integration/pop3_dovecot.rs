//! The client against a real Dovecot: every login method Dovecot offers, and every command of
//! the transaction state on a small mailbox with awkward bytes.

use popbackup::pop3::{self, AuthMethod, ErrorClass, Fetch, Reply, TlsMode};

use crate::support::dovecot::{Dovecot, dovecot_retr_bytes};

const MESSAGES: [&[u8]; 3] = [
    b"Subject: one\n\nfirst\n.leading dot\n..two dots\n.\n",
    b"Subject: two\r\n\r\nCRLF already\r\nbare\rCR and NUL \0 and \xff\r\n",
    b"Subject: three\n\nno final newline",
];

fn small_mailbox(dovecot: &Dovecot, user: &str) {
    dovecot.fill_maildir(
        user,
        MESSAGES
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("{}.msg", i + 1), *m)),
    );
}

#[test]
fn every_login_method_dovecot_offers() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    for (method, user) in [
        (AuthMethod::Auto, "u05"),
        (AuthMethod::User, "u06"),
        (AuthMethod::Plain, "u07"),
        (AuthMethod::Login, "u08"),
        (AuthMethod::Apop, "u09"),
    ] {
        let session = pop3::open_session(
            &dovecot.options(TlsMode::Implicit),
            &dovecot.credentials(user, method),
        )
        .unwrap_or_else(|e| panic!("{method:?}: {e}"));
        session.quit().unwrap();
    }
}

#[test]
fn a_wrong_password_is_an_auth_failure_without_the_password() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    for method in [AuthMethod::User, AuthMethod::Plain, AuthMethod::Login] {
        let mut creds = dovecot.credentials("u10", method);
        creds.secret = popbackup::pop3::Secret::new("not-the-password");
        let err = pop3::open_session(&dovecot.options(TlsMode::Implicit), &creds)
            .err()
            .unwrap();
        assert_eq!(err.class(), ErrorClass::Auth, "{method:?}: {err}");
        assert!(!format!("{err} {err:?}").contains("not-the-password"));
    }
}

#[test]
fn transaction_commands_on_a_small_mailbox() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    small_mailbox(&dovecot, "u11");
    let mut session = pop3::open_session(
        &dovecot.options(TlsMode::Starttls),
        &dovecot.credentials("u11", AuthMethod::Auto),
    )
    .unwrap();
    // Dovecot announces these after login.
    assert!(session.capabilities().top() && session.capabilities().uidl() && session.pipelining());
    let stat = session.stat().unwrap();
    assert_eq!(stat.count, 3);
    let list = session.list().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().map(|e| e.size).sum::<u64>(), stat.size);
    assert_eq!(session.list_one(2).unwrap(), list[1]);
    let uidl = session.uidl().unwrap();
    assert_eq!(uidl.len(), 3);
    assert_eq!(session.uidl_one(3).unwrap(), uidl[2]);
    session.noop().unwrap();

    let mut expected: Vec<Vec<u8>> = MESSAGES.iter().map(|m| dovecot_retr_bytes(m)).collect();
    expected.sort();
    let mut got = Vec::new();
    for n in 1..=3 {
        let mut body = Vec::new();
        let len = session.retr_to(n, &mut body).unwrap();
        assert_eq!(len as usize, body.len());
        got.push(body);
    }
    got.sort();
    assert_eq!(got, expected);

    let mut head = Vec::new();
    session.top_to(1, 0, &mut head).unwrap();
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    assert!(head.starts_with(b"Subject: "));

    // Out-of-range message: a -ERR answer, and the session goes on.
    let err = session.retr_to(99, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("RETR"), "{err}");
    session.noop().unwrap();
    session.quit().unwrap();
}

#[test]
fn pipelined_top_and_retr_in_one_batch() {
    let Some(dovecot) = Dovecot::get() else {
        return;
    };
    small_mailbox(&dovecot, "u12");
    let mut session = pop3::open_session(
        &dovecot.options(TlsMode::Implicit),
        &dovecot.credentials("u12", AuthMethod::Auto),
    )
    .unwrap();
    let requests = [
        Fetch::top(1, 0),
        Fetch::retr(1, 100),
        Fetch::top(2, 0),
        Fetch::retr(2, 100),
        Fetch::retr(3, 100),
    ];
    let mut replies = Vec::new();
    session
        .fetch(&requests, |req, reply| -> std::io::Result<()> {
            let Reply::Body(body) = reply else {
                panic!("refused {req:?}")
            };
            let mut buf = Vec::new();
            std::io::copy(body, &mut buf)?;
            replies.push((req.top_lines.is_some(), buf));
            Ok(())
        })
        .unwrap();
    assert_eq!(replies.len(), 5);
    for pair in [(0, 1), (2, 3)] {
        let (top, full) = (&replies[pair.0].1, &replies[pair.1].1);
        assert!(full.starts_with(top), "TOP n 0 is the header of RETR n");
    }
    session.quit().unwrap();
}
