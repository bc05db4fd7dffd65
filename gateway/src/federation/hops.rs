//! Hops between organisations (issue 18): every message that crosses an
//! organisation boundary carries the organisations it passed through, in
//! order and ending with its sender, in `metadata["convergio.federation.path"]`,
//! and their count in `metadata["convergio.federation.hops"]`.
//!
//! - Outbound ([`stamp_outbound`]): this gateway appends its own domain to
//!   the path its caller sent (a local caller: an agent or graph of this
//!   organisation passing on the metadata it received), then refuses the
//!   call if the peer is already on the path (a loop) or the path is longer
//!   than `federation.max_hops`, before any byte leaves.
//! - Inbound ([`check_inbound`]): the receiving gateway never trusts the
//!   path blindly: it appends the *verified* peer domain when the path does
//!   not already end with it, refuses a path that contains itself or is
//!   too long, and rewrites the metadata so its agents see the checked path.
//!   Only the last hop is verified; a peer that drops earlier entries can
//!   hide a loop through itself, never one through the receiver.
//!
//! Only messages carry metadata (`SendMessage`, `SendStreamingMessage`);
//! other methods are left alone.

use convergio_schemas::a2a::Method;
use serde_json::{Map, Value};

use crate::GatewayError;

/// Metadata key of the organisations a message passed through.
pub const PATH_KEY: &str = "convergio.federation.path";
/// Metadata key of the number of organisations on the path.
pub const HOPS_KEY: &str = "convergio.federation.hops";
/// Default of `federation.max_hops`.
pub const DEFAULT_MAX_HOPS: usize = 4;
/// Longest path read from a message: anything longer is over any sane
/// hop limit already, and is refused without reading further.
const MAX_PATH_READ: usize = 64;

/// Stamps the path of a call from `this_org` to the peer `to` into the
/// message of `params`, refusing a loop or a path over `max_hops`.
pub fn stamp_outbound(
    method: Method,
    params: &mut Value,
    this_org: &str,
    to: &str,
    max_hops: usize,
) -> Result<(), GatewayError> {
    let Some(metadata) = message_metadata(method, params)? else {
        return Ok(());
    };
    let mut path = read_path(metadata)?;
    if path.last().map(String::as_str) != Some(this_org) {
        path.push(this_org.to_owned());
    }
    check(&path, to, max_hops)?;
    write_path(metadata, path);
    Ok(())
}

/// Checks and rewrites the path of a call received from the verified peer
/// `peer` by `this_org`.
pub fn check_inbound(
    method: Method,
    params: &mut Value,
    this_org: &str,
    peer: &str,
    max_hops: usize,
) -> Result<(), GatewayError> {
    let Some(metadata) = message_metadata(method, params)? else {
        return Ok(());
    };
    let mut path = read_path(metadata)?;
    if path.last().map(String::as_str) != Some(peer) {
        path.push(peer.to_owned());
    }
    check(&path, this_org, max_hops)?;
    write_path(metadata, path);
    Ok(())
}

/// Refuses a path that already holds `next` or is longer than `max_hops`.
fn check(path: &[String], next: &str, max_hops: usize) -> Result<(), GatewayError> {
    if path.iter().any(|org| org.eq_ignore_ascii_case(next)) {
        return Err(GatewayError::FederationLoop {
            org: next.to_owned(),
            path: path.join(" -> "),
        });
    }
    if path.len() > max_hops {
        return Err(GatewayError::FederationHopLimit {
            hops: path.len(),
            max: max_hops,
        });
    }
    Ok(())
}

/// The message's metadata object (created when absent) for methods that
/// carry a message; `None` for the others.
fn message_metadata(
    method: Method,
    params: &mut Value,
) -> Result<Option<&mut Map<String, Value>>, GatewayError> {
    if !matches!(method, Method::SendMessage | Method::SendStreamingMessage) {
        return Ok(None);
    }
    let Some(message) = params.get_mut("message").and_then(Value::as_object_mut) else {
        return Ok(None);
    };
    let metadata = message
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    match metadata.as_object_mut() {
        Some(metadata) => Ok(Some(metadata)),
        None => Err(GatewayError::InvalidParams {
            detail: "message.metadata must be an object".to_owned(),
        }),
    }
}

fn read_path(metadata: &Map<String, Value>) -> Result<Vec<String>, GatewayError> {
    let invalid = |detail: &str| GatewayError::InvalidParams {
        detail: format!("metadata {PATH_KEY}: {detail}"),
    };
    let Some(value) = metadata.get(PATH_KEY) else {
        return Ok(Vec::new());
    };
    let Some(entries) = value.as_array() else {
        return Err(invalid("must be an array of organisation domains"));
    };
    if entries.len() > MAX_PATH_READ {
        return Err(GatewayError::FederationHopLimit {
            hops: entries.len(),
            max: MAX_PATH_READ,
        });
    }
    entries
        .iter()
        .map(|entry| {
            let org = entry
                .as_str()
                .ok_or_else(|| invalid("must be an array of organisation domains"))?;
            convergio_schemas::ids::check_org(org).map_err(|error| invalid(&error.to_string()))?;
            Ok(org.to_ascii_lowercase())
        })
        .collect()
}

fn write_path(metadata: &mut Map<String, Value>, path: Vec<String>) {
    metadata.insert(HOPS_KEY.to_owned(), Value::from(path.len()));
    metadata.insert(
        PATH_KEY.to_owned(),
        Value::Array(path.into_iter().map(Value::String).collect()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(path: Option<Value>) -> Value {
        let mut metadata = json!({"convergio.run_id": "r"});
        if let Some(path) = path {
            metadata[PATH_KEY] = path;
        }
        json!({"message": {"messageId": "m", "parts": [{"text": "x"}], "metadata": metadata}})
    }

    fn path_of(params: &Value) -> Value {
        params["message"]["metadata"][PATH_KEY].clone()
    }

    #[test]
    fn outbound_appends_this_org_and_refuses_loops_and_long_paths() {
        let send = Method::SendMessage;
        let mut params = message(None);
        stamp_outbound(send, &mut params, "a.example", "b.example", 4).expect("first hop");
        assert_eq!(path_of(&params), json!(["a.example"]));
        assert_eq!(params["message"]["metadata"][HOPS_KEY], 1);
        assert_eq!(params["message"]["metadata"]["convergio.run_id"], "r");

        let mut back = message(Some(json!(["a.example"])));
        stamp_outbound(send, &mut back, "b.example", "c.example", 4).expect("onward");
        assert_eq!(path_of(&back), json!(["a.example", "b.example"]));
        let mut back = message(Some(json!(["a.example"])));
        let looped = stamp_outbound(send, &mut back, "b.example", "a.example", 4);
        assert!(
            matches!(looped, Err(GatewayError::FederationLoop { ref org, .. }) if org == "a.example"),
            "{looped:?}"
        );

        let mut long = message(Some(json!(["w.example", "x.example", "y.example"])));
        let refused = stamp_outbound(send, &mut long, "z.example", "b.example", 3);
        assert!(matches!(
            refused,
            Err(GatewayError::FederationHopLimit { hops: 4, max: 3 })
        ));

        let mut task = json!({"id": "t"});
        stamp_outbound(Method::GetTask, &mut task, "a.example", "b.example", 4)
            .expect("no message");
        assert_eq!(task, json!({"id": "t"}));
    }

    #[test]
    fn inbound_appends_the_verified_peer_and_refuses_a_path_through_itself() {
        let send = Method::SendStreamingMessage;
        let mut params = message(Some(json!(["a.example"])));
        check_inbound(send, &mut params, "b.example", "a.example", 4).expect("honest");
        assert_eq!(path_of(&params), json!(["a.example"]));

        // A path that does not end with the signer gets the signer appended.
        let mut forged = message(Some(json!(["c.example"])));
        check_inbound(send, &mut forged, "b.example", "a.example", 4).expect("appended");
        assert_eq!(path_of(&forged), json!(["c.example", "a.example"]));

        let mut looped = message(Some(json!(["b.example"])));
        let refused = check_inbound(send, &mut looped, "b.example", "a.example", 4);
        assert!(matches!(refused, Err(GatewayError::FederationLoop { .. })));

        for bad in [json!("a.example"), json!([1]), json!(["not a domain!"])] {
            let mut params = message(Some(bad.clone()));
            let refused = check_inbound(send, &mut params, "b.example", "a.example", 4);
            assert!(
                matches!(refused, Err(GatewayError::InvalidParams { .. })),
                "{bad}"
            );
        }
    }
}
