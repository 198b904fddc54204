//! JSON decoding helpers shared by the wire types: parse errors that name the offending field, and tagged-part decoding.

use serde::de::{self, DeserializeOwned};
use serde_json::{Map, Value};

/// A JSON object kept as-is (unknown fields, opaque schemas).
pub type JsonMap = Map<String, Value>;

/// A request body that could not be decoded; the message names the field (e.g. `messages[0].role: missing field`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    message: String,
}

impl RequestError {
    /// An error with a ready-made, client-safe message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The client-facing description of the problem.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Decodes `body` into `T`; on failure decodes again with path tracking so the error names the field.
///
/// The fast path runs without path bookkeeping: only malformed requests pay for the second pass.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(first) => Err(describe_failure::<T>(body, first)),
    }
}

fn describe_failure<T: DeserializeOwned>(body: &[u8], first: serde_json::Error) -> RequestError {
    if first.is_syntax() || first.is_eof() || first.is_io() {
        return RequestError::new(format!("invalid JSON body: {}", strip_position(&first)));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let tracked: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    match tracked {
        Ok(_) => RequestError::new(format!("invalid request body: {}", strip_position(&first))),
        Err(error) => {
            let path = error.path().to_string();
            let inner = strip_position(error.inner());
            RequestError::new(describe_at(&path, &inner))
        }
    }
}

/// `"."` + "missing field `messages`" becomes "messages: missing field"; other messages are prefixed by their path.
fn describe_at(path: &str, message: &str) -> String {
    let root = path == "." || path.is_empty();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return if root {
            format!("{field}: missing field")
        } else {
            format!("{path}.{field}: missing field")
        };
    }
    if root {
        format!("request body: {message}")
    } else {
        format!("{path}: {message}")
    }
}

/// serde_json appends " at line L column C", which means nothing to an API client.
fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) if error.line() != 0 => text[..at].to_owned(),
        _ => text,
    }
}

/// Takes `key` out of a tagged object and decodes it, naming the key on failure.
pub(crate) fn take_field<T: DeserializeOwned, E: de::Error>(
    object: &mut JsonMap,
    key: &'static str,
) -> Result<T, E> {
    let value = object.remove(key).ok_or_else(|| E::missing_field(key))?;
    T::deserialize(value).map_err(|error| E::custom(format_args!("{key}: {error}")))
}

/// Like [`take_field`] but a missing or `null` value decodes as `None`.
pub(crate) fn take_optional<T: DeserializeOwned, E: de::Error>(
    object: &mut JsonMap,
    key: &'static str,
) -> Result<Option<T>, E> {
    match object.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value)
            .map(Some)
            .map_err(|error| E::custom(format_args!("{key}: {error}"))),
    }
}

/// The `type` tag of a tagged object, required to be a string.
pub(crate) fn tag_of<E: de::Error>(object: &JsonMap) -> Result<&str, E> {
    match object.get("type") {
        Some(Value::String(kind)) => Ok(kind),
        Some(_) => Err(E::custom("type: expected a string")),
        None => Err(E::missing_field("type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[serde(rename = "model")]
        _model: String,
        #[serde(rename = "messages")]
        _messages: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[serde(rename = "role")]
        _role: String,
    }

    #[test]
    fn errors_name_the_field_without_positions() {
        let cases = [
            (r#"{"model":"m"}"#, "messages: missing field"),
            (
                r#"{"model":"m","messages":[{}]}"#,
                "messages[0].role: missing field",
            ),
            (
                r#"{"model":"m","messages":[{"role":5}]}"#,
                "messages[0].role: invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"model":"m","#,
                "invalid JSON body: EOF while parsing a value",
            ),
            (
                "5",
                "request body: invalid type: integer `5`, expected struct Outer",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_body::<Outer>(body.as_bytes()).unwrap_err();
            assert_eq!(error.message(), expected, "body {body}");
        }
    }
}
