//! Decoding what a client sent into one [`Call`]: a 1.0 method with 1.0
//! params, plus how the client wants its answer (binding, dialect, JSON-RPC
//! id). JSON-RPC bodies and HTTP+JSON routes (with the `/{tenant}` prefix and
//! percent-encoded colons) both end here.

use axum::http::{HeaderMap, Method as HttpMethod};
use bytes::Bytes;
use convergio_schemas::a2a::{Method, ProtocolVersion, VERSION_HEADER};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{protojson, translate};
use crate::routes::Binding;
use crate::GatewayError;

/// How the client expects its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSide {
    /// The binding the client used.
    pub binding: Binding,
    /// The dialect the client speaks.
    pub version: ProtocolVersion,
    /// The JSON-RPC request id (`null` on HTTP+JSON).
    pub id: Value,
}

/// One A2A call in the gateway's internal (1.0) form.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation.
    pub method: Method,
    /// The 1.0 request (ProtoJSON), unknown fields kept.
    params: Value,
    /// The client's own bytes of `params`, while they still say exactly
    /// what `params` holds: a 1.0 JSON-RPC request nothing has renamed or
    /// changed is forwarded as these bytes, not encoded again (issue #25).
    /// [`Call::params_mut`] drops them, so a change cannot be lost.
    verbatim: Option<Bytes>,
    /// The caller's side of the exchange.
    pub client: ClientSide,
}

// === impl Call ===

impl Call {
    /// A call of `method` with `params` (no client bytes to forward as they are).
    pub fn new(method: Method, params: Value, client: ClientSide) -> Self {
        Self {
            method,
            params,
            verbatim: None,
            client,
        }
    }

    /// The 1.0 params.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The params, to change: from here on the call is encoded from them.
    pub fn params_mut(&mut self) -> &mut Value {
        self.verbatim = None;
        &mut self.params
    }

    /// Takes the params and, when they are unchanged, the client's bytes of
    /// them, leaving `null`.
    pub(crate) fn take_params(&mut self) -> (Value, Option<Bytes>) {
        (std::mem::take(&mut self.params), self.verbatim.take())
    }
}

/// Equal calls ask the same: the kept bytes are only a copy of the params.
impl PartialEq for Call {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method && self.params == other.params && self.client == other.client
    }
}

/// The client's dialect from the `A2A-Version` header (or the
/// `A2A-Version` query parameter); absent means 0.3.
pub fn client_version(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<ProtocolVersion, GatewayError> {
    let from_header = headers
        .get(VERSION_HEADER)
        .map(|value| value.to_str().unwrap_or("\u{fffd}").to_owned());
    let from_query = query.and_then(|query| {
        query_pairs(query)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == VERSION_HEADER)
            .map(|(_, value)| value)
    });
    let requested = from_header.or(from_query);
    ProtocolVersion::from_header(requested.as_deref()).ok_or_else(|| {
        GatewayError::VersionNotSupported {
            version: requested.unwrap_or_default(),
        }
    })
}

/// Decodes a JSON-RPC request body. On failure, the id is returned too when
/// it could be read, so the error echoes it.
pub fn parse_jsonrpc(
    body: &Bytes,
    version: ProtocolVersion,
) -> Result<Call, Box<(GatewayError, Value)>> {
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => return Err(Box::new((not_an_envelope(body, error), Value::Null))),
    };
    let id = envelope.id.unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
        return Err(Box::new((
            GatewayError::InvalidRequest {
                detail: "id must be a string, a number or null".into(),
            },
            Value::Null,
        )));
    }
    let invalid = |detail: &str| -> Box<(GatewayError, Value)> {
        Box::new((
            GatewayError::InvalidRequest {
                detail: detail.to_owned(),
            },
            id.clone(),
        ))
    };
    if envelope.jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    let Some(name) = envelope.method.as_ref().and_then(Value::as_str) else {
        return Err(invalid("method must be a string"));
    };
    let method = match version {
        ProtocolVersion::V1_0 => Method::from_v1_name(name),
        ProtocolVersion::V0_3 => match Method::from_v03_name(name) {
            Some(method) => Some(method),
            None if Method::from_v1_name(name).is_some() => {
                return Err(Box::new((
                    GatewayError::VersionNotSupported {
                        version: format!("0.3 (method {name} needs A2A-Version: 1.0)"),
                    },
                    id,
                )))
            }
            None => None,
        },
    };
    let Some(method) = method else {
        return Err(Box::new((
            GatewayError::MethodNotFound {
                method: name.to_owned(),
            },
            id,
        )));
    };
    let raw = envelope.params.filter(|raw| raw.get() != "null");
    let params = match raw.map(|raw| strict_value(raw.get())) {
        None => Value::Object(Map::new()),
        Some(Ok(params @ Value::Object(_))) => params,
        Some(Ok(_)) => {
            return Err(Box::new((
                GatewayError::InvalidParams {
                    detail: "params must be an object".into(),
                },
                id,
            )))
        }
        // A key given twice: valid JSON (RFC 8259 leaves duplicate names to
        // the parser), but params this gateway cannot forward with one meaning.
        Some(Err(error)) if error.is_data() => {
            return Err(Box::new((
                GatewayError::InvalidParams {
                    detail: format!("params: {error}"),
                },
                id,
            )))
        }
        // Nested deeper than the parser goes.
        Some(Err(error)) => {
            return Err(Box::new((
                GatewayError::MalformedJson {
                    detail: format!("params: {error}"),
                },
                id,
            )))
        }
    };
    let (params, verbatim) = match version {
        ProtocolVersion::V0_3 => (
            translate::request_to_v1(method, params)
                .map_err(|error| Box::new((error, id.clone())))?,
            None,
        ),
        ProtocolVersion::V1_0 => {
            let mut params = params;
            let renamed = protojson::to_json_names(method, &mut params)
                .map_err(|error| Box::new((error, id.clone())))?;
            let verbatim = raw
                .filter(|_| !renamed)
                .map(|raw| body.slice_ref(raw.get().as_bytes()));
            (params, verbatim)
        }
    };
    check_params(method, &params).map_err(|error| Box::new((error, id.clone())))?;
    Ok(Call {
        method,
        params,
        verbatim,
        client: ClientSide {
            binding: Binding::JsonRpc,
            version,
            id,
        },
    })
}

/// A JSON-RPC request's members. `params` is kept as the client's bytes
/// and decoded by [`strict_value`]; a member named twice is refused.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    jsonrpc: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    method: Option<Value>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// Why `body` is not a JSON-RPC request object (`error`: the envelope's).
fn not_an_envelope(body: &[u8], error: serde_json::Error) -> GatewayError {
    match serde_json::from_slice::<Value>(body) {
        Err(error) => GatewayError::MalformedJson {
            detail: error.to_string(),
        },
        Ok(Value::Array(_)) => GatewayError::InvalidRequest {
            detail: "batch requests are not supported".into(),
        },
        // An object whose envelope failed names a member twice.
        Ok(Value::Object(_)) => GatewayError::InvalidRequest {
            detail: error.to_string(),
        },
        Ok(_) => GatewayError::InvalidRequest {
            detail: "the request must be a JSON object".into(),
        },
    }
}

/// Decodes `json` like `serde_json::from_str::<Value>`, but refuses an
/// object that names a key twice: serde_json keeps the last, other parsers
/// the first, and a request forwarded as the client's bytes must mean to
/// the agent what it meant to the gateway's checks.
pub(crate) fn strict_value(json: &str) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// [`strict_value`]'s visitor: serde_json's own `Value` visitor plus the
/// duplicate-key check (no crate offers it for untyped JSON).
#[derive(Clone, Copy)]
struct Strict;

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde_json::map::Entry;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match object.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(self)?);
                }
                Entry::Occupied(slot) => {
                    return Err(serde::de::Error::custom(format_args!(
                        "the key {:?} is given twice",
                        slot.key()
                    )))
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// The fields routing needs, checked; everything else passes through.
pub fn check_params(method: Method, params: &Value) -> Result<(), GatewayError> {
    let string = |key: &str| -> Result<(), GatewayError> {
        match params.get(key).and_then(Value::as_str) {
            Some(text) if !text.is_empty() => Ok(()),
            _ => Err(GatewayError::InvalidParams {
                detail: format!("{key} must be a non-empty string"),
            }),
        }
    };
    // Identifiers are stored (task routes, contexts) and must be text both
    // backends keep: no NUL (issue 15).
    let message = params.get("message");
    let identifiers = [
        params.get("id"),
        params.get("taskId"),
        params.get("contextId"),
        message.and_then(|message| message.get("taskId")),
        message.and_then(|message| message.get("contextId")),
        message.and_then(|message| message.get("messageId")),
    ];
    if identifiers
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|text| text.contains('\0'))
    {
        return Err(GatewayError::InvalidParams {
            detail: format!("identifiers: {}", convergio_schemas::NUL_MESSAGE),
        });
    }
    match method {
        Method::SendMessage | Method::SendStreamingMessage => {
            let message = params
                .get("message")
                .filter(|message| message.is_object())
                .ok_or_else(|| GatewayError::InvalidParams {
                    detail: "message must be an object".into(),
                })?;
            if !message.get("parts").is_some_and(Value::is_array) {
                return Err(GatewayError::InvalidParams {
                    detail: "message.parts must be an array".into(),
                });
            }
            match message.get("messageId") {
                Some(Value::String(id)) if !id.is_empty() => {}
                _ => {
                    return Err(GatewayError::InvalidParams {
                        detail: "message.messageId must be a non-empty string".into(),
                    })
                }
            }
            if let Some(task_id) = message.get("taskId") {
                if !task_id.is_string() {
                    return Err(GatewayError::InvalidParams {
                        detail: "message.taskId must be a string".into(),
                    });
                }
            }
            Ok(())
        }
        Method::GetTask | Method::CancelTask | Method::SubscribeToTask => string("id"),
        Method::CreateTaskPushNotificationConfig | Method::ListTaskPushNotificationConfigs => {
            string("taskId")
        }
        Method::GetTaskPushNotificationConfig | Method::DeleteTaskPushNotificationConfig => {
            string("taskId")?;
            string("id")
        }
        Method::ListTasks | Method::GetExtendedAgentCard => Ok(()),
    }
}

/// The task a call is about, when it follows up on one.
pub fn task_id_of(method: Method, params: &Value) -> Option<&str> {
    match method {
        Method::GetTask | Method::CancelTask | Method::SubscribeToTask => {
            params.get("id")?.as_str()
        }
        Method::CreateTaskPushNotificationConfig
        | Method::GetTaskPushNotificationConfig
        | Method::ListTaskPushNotificationConfigs
        | Method::DeleteTaskPushNotificationConfig => params.get("taskId")?.as_str(),
        Method::SendMessage | Method::SendStreamingMessage => {
            params.get("message")?.get("taskId")?.as_str()
        }
        Method::ListTasks | Method::GetExtendedAgentCard => None,
    }
}

/// The context a call names, for the calls that can write into one.
pub fn context_id_of(method: Method, params: &Value) -> Option<&str> {
    match method {
        Method::SendMessage | Method::SendStreamingMessage => params
            .get("message")?
            .get("contextId")?
            .as_str()
            .filter(|context_id| !context_id.is_empty()),
        _ => None,
    }
}

/// Splits and strictly percent-decodes a raw path tail: a `%` not followed
/// by two hex digits, or bytes that are not UTF-8, are a [`GatewayError::BadPath`].
pub fn decode_segments(raw: &str) -> Result<Vec<String>, GatewayError> {
    raw.split('/')
        .filter(|segment| !segment.is_empty())
        .map(decode_component)
        .collect()
}

/// Strictly percent-decodes one path segment or query component.
pub fn decode_component(raw: &str) -> Result<String, GatewayError> {
    let bytes = raw.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'%' {
            let valid = bytes.get(index + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(index + 2).is_some_and(u8::is_ascii_hexdigit);
            if !valid {
                return Err(GatewayError::BadPath {
                    detail: format!("bad percent-encoding in {raw:?}"),
                });
            }
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| GatewayError::BadPath {
            detail: format!("percent-encoding of {raw:?} is not UTF-8"),
        })
}

/// Decodes `a=1&b=x%20y` (also `+` as space) into pairs.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, GatewayError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((
                decode_component(&key.replace('+', " "))?,
                decode_component(&value.replace('+', " "))?,
            ))
        })
        .collect()
}

/// Query parameters of `method` as typed JSON fields (camelCase names
/// kept, the proto's original names turned into them).
fn query_object(method: Method, query: Option<&str>) -> Result<Map<String, Value>, GatewayError> {
    let mut object = Map::new();
    for (key, value) in query.map(query_pairs).transpose()?.unwrap_or_default() {
        if key == VERSION_HEADER {
            continue;
        }
        let key = protojson::query_name(method, &key).map_or(key, str::to_owned);
        let typed = match key.as_str() {
            "historyLength" | "pageSize" => match value.parse::<i64>() {
                Ok(number) => Value::from(number),
                Err(_) => {
                    return Err(GatewayError::InvalidParams {
                        detail: format!("{key} must be an integer"),
                    })
                }
            },
            "includeArtifacts" => match value.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => {
                    return Err(GatewayError::InvalidParams {
                        detail: format!("{key} must be true or false"),
                    })
                }
            },
            _ => Value::String(value),
        };
        object.insert(key, typed);
    }
    Ok(object)
}

/// The body of `method` as its request's JSON fields (the proto's
/// original names turned into JSON names).
fn body_object(method: Method, body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(mut value @ Value::Object(_)) => {
            protojson::to_json_names(method, &mut value)?;
            match value {
                Value::Object(object) => Ok(object),
                _ => Ok(Map::new()),
            }
        }
        Ok(_) => Err(GatewayError::InvalidParams {
            detail: "the body must be a JSON object".into(),
        }),
        Err(error) => Err(GatewayError::MalformedJson {
            detail: error.to_string(),
        }),
    }
}

const FIRST_SEGMENTS: [&str; 4] = [
    "message:send",
    "message:stream",
    "tasks",
    "extendedAgentCard",
];

/// Decodes an HTTP+JSON request (path segments after `/agents/{name}`).
pub fn parse_rest(
    http_method: &HttpMethod,
    segments: &[String],
    query: Option<&str>,
    body: &[u8],
    version: ProtocolVersion,
) -> Result<Call, GatewayError> {
    let (tenant, route) = match segments.first() {
        Some(first) if !FIRST_SEGMENTS.contains(&first.as_str()) => {
            (Some(first.clone()), &segments[1..])
        }
        _ => (None, segments),
    };
    let route: Vec<&str> = route.iter().map(String::as_str).collect();
    let not_found = || GatewayError::RouteNotFound {
        path: format!("/{}", segments.join("/")),
    };
    let mut params = Map::new();
    let method = match (http_method, route.as_slice()) {
        (&HttpMethod::POST, ["message:send"]) => {
            params = body_object(Method::SendMessage, body)?;
            Method::SendMessage
        }
        (&HttpMethod::POST, ["message:stream"]) => {
            params = body_object(Method::SendStreamingMessage, body)?;
            Method::SendStreamingMessage
        }
        (&HttpMethod::GET, ["tasks"]) => {
            params = query_object(Method::ListTasks, query)?;
            Method::ListTasks
        }
        (&HttpMethod::GET, ["extendedAgentCard"]) => Method::GetExtendedAgentCard,
        (_, ["tasks", last]) => {
            let (id, verb) = match last.rsplit_once(':') {
                Some((id, verb @ ("cancel" | "subscribe"))) => (id, Some(verb)),
                _ => (*last, None),
            };
            let method = match (http_method, verb) {
                (&HttpMethod::GET, None) => {
                    params = query_object(Method::GetTask, query)?;
                    Method::GetTask
                }
                (&HttpMethod::POST, Some("cancel")) => {
                    params = body_object(Method::CancelTask, body)?;
                    Method::CancelTask
                }
                (&HttpMethod::GET | &HttpMethod::POST, Some("subscribe")) => {
                    Method::SubscribeToTask
                }
                _ => return Err(not_found()),
            };
            params.insert("id".into(), Value::from(id));
            method
        }
        (_, ["tasks", task_id, "pushNotificationConfigs"]) => {
            let method = match *http_method {
                HttpMethod::POST => {
                    params = body_object(Method::CreateTaskPushNotificationConfig, body)?;
                    Method::CreateTaskPushNotificationConfig
                }
                HttpMethod::GET => {
                    params = query_object(Method::ListTaskPushNotificationConfigs, query)?;
                    Method::ListTaskPushNotificationConfigs
                }
                _ => return Err(not_found()),
            };
            params.insert("taskId".into(), Value::from(*task_id));
            method
        }
        (_, ["tasks", task_id, "pushNotificationConfigs", config_id]) => {
            let method = match *http_method {
                HttpMethod::GET => Method::GetTaskPushNotificationConfig,
                HttpMethod::DELETE => Method::DeleteTaskPushNotificationConfig,
                _ => return Err(not_found()),
            };
            params.insert("taskId".into(), Value::from(*task_id));
            params.insert("id".into(), Value::from(*config_id));
            method
        }
        _ => return Err(not_found()),
    };
    if version != ProtocolVersion::V1_0 {
        // The HTTP+JSON routes above are 1.0 routes; 0.3 used `/v1/...`.
        return Err(GatewayError::VersionNotSupported {
            version: "0.3 (HTTP+JSON routes need A2A-Version: 1.0)".into(),
        });
    }
    if let Some(tenant) = tenant {
        params.insert("tenant".into(), Value::from(tenant));
    }
    let params = Value::Object(params);
    check_params(method, &params)?;
    Ok(Call::new(
        method,
        params,
        ClientSide {
            binding: Binding::HttpJson,
            version,
            id: Value::Null,
        },
    ))
}

#[cfg(test)]
mod tests;
