//! One request sent whole and its answer read, with nothing held back: the preparation steps
//! of `race` (a login, a form fetched for its token) go over the same transports, TLS and
//! protocol as the burst they prepare, so that a session made here is one the burst can use.

use super::delivery::{Addressed, Wire};
use super::h2::Packet;
use super::http1::{Answer, Held};
use super::{Sync, TransportError};

/// Sends `addressed` and reads its answer, within the wire's `--timeout` (connecting
/// included). HTTP/2 when the burst is single-packet (the server was found to speak it),
/// HTTP/1.1 otherwise; redirects are answers like any other, never followed.
pub async fn one(wire: &Wire, addressed: Addressed) -> Result<Answer, TransportError> {
    let bytes = (wire.sync != Sync::SinglePacket).then(|| addressed.http1_bytes());
    let Addressed {
        host,
        port,
        request,
        ..
    } = addressed;
    let work = async {
        let Some(bytes) = bytes else {
            let tls = wire.tls.as_ref().map(|t| &t.h2);
            let (mut packet, _) =
                Packet::prepare(&host, port, tls, vec![request], wire.timeout).await?;
            packet.release().await?;
            let stream = packet
                .streams
                .pop()
                .ok_or_else(|| TransportError::H2("the server took no stream".to_owned()))?;
            return stream.answer().await;
        };
        let tls = wire.tls.as_ref().map(|t| &t.http1);
        // Nothing held back: the whole request is written by the pre-send.
        let held = Held::pre_send(&host, port, tls, bytes, 0, wire.timeout).await?;
        held.answer().await
    };
    tokio::time::timeout(wire.timeout, work)
        .await
        .map_err(|_| TransportError::Timeout(wire.timeout))?
}
