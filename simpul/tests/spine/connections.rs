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
    // its 10 s deadline: the steps up to the closing below take well under a second), the
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
