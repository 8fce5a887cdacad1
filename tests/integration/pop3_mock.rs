//! The client over an in-memory stream that delivers one byte per read: exact bytes written,
//! exact bytes delivered, whatever the chunking.

use popbackup::pop3::{AuthMethod, Client, Credentials, Secret, SessionOptions};

use crate::support::mock_stream::MockStream;

const SERVER: &[u8] = b"+OK ready <9.9@mock>\r\n\
+OK caps\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n\
+OK\r\n+OK welcome\r\n\
+OK caps\r\nTOP\r\nUIDL\r\n.\r\n\
+OK 2 300\r\n\
+OK\r\n1 100\r\n2 200\r\n.\r\n\
+OK\r\n1 a\r\n2   b\t\r\n.\r\n\
+OK message follows\r\nSubject: x\r\n\r\n..dot\r\nnul\0 and bare\r cr\r\n.\r\n\
+OK\r\nSubject: y\r\n\r\n.\r\n\
+OK bye\r\n";

#[test]
fn a_whole_session_byte_by_byte() {
    for chunk in [1, 2, 7, 4096] {
        let mut stream = MockStream::new(SERVER);
        stream.chunk = chunk;
        let client = Client::greet(stream, SessionOptions::default()).unwrap();
        assert!(client.greeting().contains("<9.9@mock>"));
        let creds = Credentials::new("bob", Secret::new("pw"), AuthMethod::User);
        let mut session = client.login(&creds).map_err(|(e, _)| e).unwrap();
        assert!(!session.pipelining());
        let stat = session.stat().unwrap();
        assert_eq!((stat.count, stat.size), (2, 300));
        assert_eq!(session.list().unwrap().len(), 2);
        let uidl = session.uidl().unwrap();
        assert_eq!(uidl[1].uidl.as_str(), "b");
        let mut body = Vec::new();
        session.retr_to(1, &mut body).unwrap();
        assert_eq!(body, b"Subject: x\r\n\r\n.dot\r\nnul\0 and bare\r cr\r\n");
        let mut head = Vec::new();
        session.top_to(2, 0, &mut head).unwrap();
        assert_eq!(head, b"Subject: y\r\n\r\n");
        session.quit().unwrap();
    }
}

#[test]
fn the_client_writes_exactly_these_commands() {
    let mut stream = MockStream::new(SERVER);
    stream.chunk = 3;
    let client = Client::greet(stream, SessionOptions::default()).unwrap();
    let creds = Credentials::new("bob", Secret::new("pw"), AuthMethod::User);
    let mut session = client.login(&creds).map_err(|(e, _)| e).unwrap();
    session.stat().unwrap();
    session.list().unwrap();
    session.uidl().unwrap();
    session.retr_to(1, &mut Vec::new()).unwrap();
    session.top_to(2, 0, &mut Vec::new()).unwrap();
    let written = session.into_inner();
    assert_eq!(
        String::from_utf8(written.written).unwrap(),
        "CAPA\r\nUSER bob\r\nPASS pw\r\nCAPA\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\n"
    );
}
