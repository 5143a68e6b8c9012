//! The listeners' connection bounds against plain TCP sockets that never start TLS (issue
//! #12): over `max_connections_per_address` or `max_connections` a connection is closed as
//! soon as it is accepted, another member's exchanges still pass, the metrics show it, and
//! the slots free when the sockets close. The sockets come from other loopback addresses
//! (127.0.0.2, 127.0.0.3), which Linux routes to the loopback interface.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

const MAX: usize = 20;
const PER_ADDRESS: usize = 12;
const OPEN: &str = "simpul_connections_open";
const REFUSED: &str = "simpul_connections_refused_total";
const MEMBER_LISTENER: &str = "listener=\"gateway\"";
const BY_ADDRESS: &str = "limit=\"max_connections_per_address\"";
const BY_LISTENER: &str = "limit=\"max_connections\"";
/// Generous: the machine may be busy compiling.
const DEADLINE: Duration = Duration::from_secs(10);

/// `n` plain TCP connections from `from` to `to`, opened one after the other (so the
/// gateway accepts them in this order), none of which sends a byte.
async fn plain_sockets(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((from, 0))).unwrap();
        sockets.push(socket.connect(to).await.unwrap());
    }
    sockets
}

/// Dukcapil's member-listener series `name` (summed over those matching `labels`), once
/// `until` holds of it; panics with the last value after [`DEADLINE`].
async fn dukcapil_series(
    f: &Federation,
    name: &str,
    labels: &[&str],
    until: impl Fn(f64) -> bool,
) -> f64 {
    let labels: Vec<&str> = [MEMBER_LISTENER].iter().chain(labels).copied().collect();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let value = f.counter(DUKCAPIL, name, &labels).await;
        if until(value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} is still {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kemlu's gateway asks Dukcapil's, as Peduli WNI's query makes it: a 200 within 5 s.
async fn an_exchange_passes(f: &Federation) {
    tokio::time::timeout(Duration::from_secs(5), f.ask_citizenship())
        .await
        .expect("an exchange of another member answered within 5 s");
}

#[tokio::test]
async fn sockets_over_the_bounds_are_closed_at_once_and_exchanges_still_pass() {
    let f = Federation::start_with(Options {
        edits: vec![dukcapil_limits(&format!(
            "max_connections = {MAX}, max_connections_per_address = {PER_ADDRESS}"
        ))],
        ..Default::default()
    })
    .await;
    let listen = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));

    // One address: its first PER_ADDRESS sockets are held (in the TLS handshake, for up to
    // its 5 s deadline: the steps up to the closing below take well under a second), the
    // rest closed at once.
    let mut from_a = plain_sockets(a, listen, PER_ADDRESS + 4).await;
    let exact = |n: usize| move |v: f64| v == n as f64;
    dukcapil_series(&f, OPEN, &[], exact(PER_ADDRESS)).await;
    dukcapil_series(&f, REFUSED, &[BY_ADDRESS], exact(4)).await;
    for refused in &mut from_a[PER_ADDRESS..] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(DEADLINE, refused.read(&mut byte))
            .await
            .expect("a refused connection is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    an_exchange_passes(&f).await;

    // A second address fills the listener: the listener's own bound refuses the rest.
    // (Kemlu's kept-alive connection may hold one of the slots.)
    let from_b = plain_sockets(b, listen, PER_ADDRESS).await;
    let full_refusals = dukcapil_series(&f, REFUSED, &[BY_LISTENER], |v| v >= 4.0).await;
    let open = f.counter(DUKCAPIL, OPEN, &[MEMBER_LISTENER]).await;
    assert!(open <= MAX as f64, "{open} open over a bound of {MAX}");

    // Closed, the idle sockets give their slots back: all of them (Kemlu's may remain).
    drop((from_a, from_b));
    dukcapil_series(&f, OPEN, &[], |v| v <= 1.0).await;
    let again = plain_sockets(a, listen, PER_ADDRESS).await;
    dukcapil_series(&f, OPEN, &[], |v| v >= PER_ADDRESS as f64).await;
    assert_eq!(
        f.counter(DUKCAPIL, REFUSED, &[MEMBER_LISTENER, BY_ADDRESS])
            .await,
        4.0,
        "the address's slots were freed"
    );
    assert_eq!(
        f.counter(DUKCAPIL, REFUSED, &[MEMBER_LISTENER, BY_LISTENER])
            .await,
        full_refusals,
        "the listener's slots were freed"
    );
    an_exchange_passes(&f).await;
    drop(again);
}

/// A ClientHello offering `http/1.1`, as any TLS client's first flight: the server answers
/// it and then waits for the client's certificate, which never comes.
fn client_hello() -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Sockets from `from` that each send a ClientHello and then nothing.
async fn stalled_handshakes(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut sockets = plain_sockets(from, to, n).await;
    for socket in &mut sockets {
        tokio::io::AsyncWriteExt::write_all(socket, &client_hello())
            .await
            .unwrap();
    }
    sockets
}

/// Each socket receives the server's first flight (a TLS handshake record): the server took
/// its handshake on.
async fn server_flights(sockets: &mut [TcpStream]) {
    for socket in sockets {
        let mut record = [0u8; 5];
        tokio::time::timeout(DEADLINE, socket.read_exact(&mut record))
            .await
            .expect("the server answers a ClientHello it has a place for")
            .unwrap();
        assert_eq!(record[0], 0x16, "a TLS handshake record: {record:?}");
    }
}

#[tokio::test]
async fn handshakes_past_the_client_hello_are_bounded_and_silent_sockets_take_none() {
    const HANDSHAKES: usize = 2;
    let f = Federation::start_with(Options {
        edits: vec![dukcapil_limits(&format!(
            "max_connections = {MAX}, max_connections_per_address = {PER_ADDRESS}, max_handshakes = {HANDSHAKES}"
        ))],
        ..Default::default()
    })
    .await;
    let listen = f.config.member(&id(DUKCAPIL)).unwrap().listen;
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    const BY_HANDSHAKES: &str = "limit=\"max_handshakes\"";

    // Sockets that never send a byte hold a connection slot but no handshake place: two
    // handshakes that stop after their ClientHello still take the two places.
    let silent = plain_sockets(b, listen, 5).await;
    let mut stalled = stalled_handshakes(a, listen, HANDSHAKES).await;
    dukcapil_series(&f, OPEN, &[], |v| v >= (5 + HANDSHAKES) as f64).await;
    server_flights(&mut stalled).await;
    assert_eq!(
        f.counter(DUKCAPIL, REFUSED, &[MEMBER_LISTENER, BY_HANDSHAKES])
            .await,
        0.0
    );

    // A third ClientHello finds both places taken: closed at once, and counted.
    let mut third = stalled_handshakes(a, listen, 1).await;
    dukcapil_series(&f, REFUSED, &[BY_HANDSHAKES], |v| v == 1.0).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, third[0].read_to_end(&mut rest))
        .await
        .expect("a refused handshake is closed at once");
    if read.is_ok() {
        assert!(
            rest.is_empty(),
            "no ServerHello for the refused one: {rest:?}"
        );
    }

    // The stalled handshakes end with their sockets: the places are free again, and an
    // exchange (a new connection of Kemlu's, or its kept-alive one) is answered.
    drop(stalled);
    an_exchange_passes(&f).await;
    let mut again = stalled_handshakes(a, listen, HANDSHAKES).await;
    server_flights(&mut again).await;
    assert_eq!(
        f.counter(DUKCAPIL, REFUSED, &[MEMBER_LISTENER, BY_HANDSHAKES])
            .await,
        1.0,
        "the places were freed"
    );
    drop((silent, again));
}
