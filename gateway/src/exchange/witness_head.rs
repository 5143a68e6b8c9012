//! The consumer's tree head (PROTOCOL.md §3.3 rows 18a–18b, §5.4): when the request
//! carries one, it is a head of `iss`'s log signed with `iss`'s key, and consistent with the
//! newest head this gateway holds from `iss`; and `iss`'s log has not been caught forked.

use contracts::{Manifest, MemberId};
use http::HeaderMap;

use super::refusal::Refusal;
use crate::client::PeerClient;
use crate::witness::{TREE_HEAD_HEADER, Witness, WitnessError};

pub(super) async fn witness_head(
    witness: &Witness,
    manifest: &Manifest,
    peer: Option<&PeerClient>,
    iss: &MemberId,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let mut heads = headers.get_all(TREE_HEAD_HEADER).iter();
    let head = heads.next();
    if heads.next().is_some() {
        return Err(Refusal::Witness(WitnessError::BadHead(
            "given more than once".into(),
        )));
    }
    witness
        .observe(manifest, peer, iss, head)
        .await
        .map_err(Refusal::Witness)
}
