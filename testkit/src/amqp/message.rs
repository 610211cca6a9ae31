//! A message taken from a queue, with its AMQP headers as JSON.

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::Value;

/// One message taken from a queue.
#[derive(Debug, Clone)]
pub struct AmqpMessage {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// The AMQP headers table converted to JSON (`{}` if none); e.g. the
    /// `x-death` entries RabbitMQ adds to dead-lettered messages.
    pub headers: Value,
    pub properties: BasicProperties,
}

impl AmqpMessage {
    pub(super) fn from_parts(
        exchange: &str,
        routing_key: &str,
        body: Vec<u8>,
        properties: BasicProperties,
    ) -> Self {
        let headers = properties
            .headers()
            .as_ref()
            .map(field_table_to_json)
            .unwrap_or_else(|| Value::Object(Default::default()));
        AmqpMessage {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            body,
            headers,
            properties,
        }
    }

    /// The body parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "message body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Converts an AMQP field table (headers) to JSON: strings, numbers, bools,
/// arrays and nested tables as themselves; timestamps as seconds; byte arrays
/// as lossy UTF-8.
pub fn field_table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), amqp_value_to_json(v)))
            .collect(),
    )
}

fn amqp_value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Float(f) => (*f as f64).into(),
        AMQPValue::Double(f) => (*f).into(),
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_string()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::FieldArray(a) => {
            Value::Array(a.as_slice().iter().map(amqp_value_to_json).collect())
        }
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::FieldTable(t) => field_table_to_json(t),
        AMQPValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        other => Value::String(format!("{other:?}")),
    }
}
