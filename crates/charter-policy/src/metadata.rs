//! The inductive state: named maps under `data.metadata`, changed only by the ops of allowed
//! decisions, applied all-or-nothing.

use serde_json::{Map, Value};

use crate::limits::{MAX_METADATA_ENTRIES, MAX_METADATA_VALUE_BYTES};

/// Metadata maps: name -> (key -> value).
pub(crate) type Metadata = Map<String, Value>;

/// Applies `ops` (the `metadata` array of a decision) to a copy of `current`. Semantics as ACI:
/// `add` on an existing key and `remove` of a missing key are errors; `update` sets.
pub(crate) fn apply(current: &Metadata, ops: &Value) -> Result<Metadata, String> {
    let ops = match ops {
        Value::Null => return Ok(current.clone()),
        Value::Array(ops) => ops,
        _ => return Err("metadata ops are not an array".to_owned()),
    };
    let mut next = current.clone();
    for op in ops {
        let name = str_field(op, "name")?;
        let action = str_field(op, "action")?;
        let key = str_field(op, "key")?;
        let map = next
            .entry(name.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(map) = map else {
            return Err(format!("metadata {name} is not a map"));
        };
        match action {
            "add" | "update" => {
                let value = op.get("value").cloned().unwrap_or(Value::Null);
                let size = serde_json::to_vec(&value)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > MAX_METADATA_VALUE_BYTES {
                    return Err(format!("metadata value for {name}[{key}] is too large"));
                }
                if action == "add" && map.contains_key(key) {
                    return Err(format!("metadata {name} already has key {key:?}"));
                }
                map.insert(key.to_owned(), value);
            }
            "remove" => {
                if map.remove(key).is_none() {
                    return Err(format!("metadata {name} has no key {key:?} to remove"));
                }
            }
            other => return Err(format!("unknown metadata action {other:?}")),
        }
    }
    let entries: usize = next
        .values()
        .map(|m| m.as_object().map_or(0, Map::len))
        .sum();
    if entries > MAX_METADATA_ENTRIES {
        return Err(format!(
            "metadata would exceed {MAX_METADATA_ENTRIES} entries"
        ));
    }
    Ok(next)
}

fn str_field<'a>(op: &'a Value, field: &str) -> Result<&'a str, String> {
    op.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("metadata op without string {field}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_twice_fails_and_leaves_state() {
        let s = apply(
            &Map::new(),
            &json!([{"name":"devices","action":"add","key":"a","value":"h"}]),
        )
        .unwrap();
        let err = apply(
            &s,
            &json!([{"name":"devices","action":"add","key":"a","value":"h"}]),
        );
        assert!(err.unwrap_err().contains("already has key"));
        assert_eq!(s["devices"]["a"], "h");
    }

    #[test]
    fn ops_are_all_or_nothing() {
        let ops = json!([
            {"name":"devices","action":"add","key":"a","value":"h"},
            {"name":"devices","action":"remove","key":"missing"}
        ]);
        assert!(apply(&Map::new(), &ops).is_err());
    }

    #[test]
    fn update_and_remove() {
        let s = apply(
            &Map::new(),
            &json!([{"name":"m","action":"update","key":"c","value":[1]}]),
        )
        .unwrap();
        let s = apply(&s, &json!([{"name":"m","action":"remove","key":"c"}])).unwrap();
        assert_eq!(s["m"], json!({}));
    }
}
