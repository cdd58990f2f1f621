//! The three PATCH formats of the API server, for the kinds the simulator serves:
//! JSON merge patch (RFC 7386), strategic merge patch (what `kubectl apply` and
//! `kubectl patch` send by default) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field in the kinds served (Service ports by port,
/// everything else with a `name` by name); None: the list is replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "ports" => Some("port"),
        "ownerReferences" => Some("uid"),
        "conditions" => Some("type"),
        "finalizers" => None,
        _ => None,
    }
}

/// Strategic merge patch as the API server applies it to the built-in kinds:
/// maps merge, lists with a merge key merge element by element, other lists are
/// replaced; the directives `$patch`, `$retainKeys`, `$setElementOrder/…` and
/// `$deleteFromPrimitiveList/…` are honoured.
pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut v = patch.clone();
            v.as_object_mut().expect("object").remove("$patch");
            *target = v;
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch type: {other}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("made an object");
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) =
                (t.get_mut(field).and_then(Value::as_array_mut), v.as_array())
            {
                list.retain(|e| !del.contains(e));
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(format!("unknown directive {k}"));
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (v, merge_key(k)) {
            (Value::Array(items), Some(key)) => {
                let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                merge_list(slot.as_array_mut().expect("array"), items, key)?;
            }
            (Value::Object(_), _) => {
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                strategic(slot, v)?;
                if slot.is_null() {
                    t.remove(k);
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(list: &mut Vec<Value>, items: &[Value], key: &str) -> Result<(), String> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *list = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(());
    }
    for item in items {
        let id = item.get(key);
        let pos = id.and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
        match (item.get("$patch").and_then(Value::as_str), pos) {
            (Some("delete"), Some(i)) => {
                list.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => strategic(&mut list[i], item)?,
            (_, None) => list.push(item.clone()),
        }
    }
    Ok(())
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy, test.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("an operation needs a path")?;
        match op["op"].as_str().unwrap_or("") {
            "add" => add(target, path, op["value"].clone())?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                remove(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move needs from")?;
                let v = remove(target, from)?;
                add(target, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy needs from")?;
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("copy from missing path {from}"))?;
                add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected operation {other:?}")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("bad index in {path}"))?
            };
            if i > a.len() {
                return Err(format!("index out of range in {path}"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("doc is missing path: {path:?}");
    match target.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            (i < a.len()).then(|| a.remove(i)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn strategic_merges_ports_by_port_and_honours_directives() {
        let mut t = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
                     "selector": {"app": "x"}}});
        strategic(
            &mut t,
            &json!({"metadata": {"labels": {"b": null, "c": "3"}},
                "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 8080}],
                         "ports": [{"port": 8080, "name": "alt"}, {"port": 443, "$patch": "delete"}],
                         "selector": {"$patch": "replace", "app": "y"}}}),
        )
        .unwrap();
        assert_eq!(t["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        assert_eq!(
            t["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 8080, "name": "alt"}])
        );
        assert_eq!(t["spec"]["selector"], json!({"app": "y"}));
    }

    #[test]
    fn json_patch_applies_operations_in_order() {
        let mut t = json!({"data": {"a": "1"}, "list": [1, 2]});
        json_patch(
            &mut t,
            &json!([{"op": "add", "path": "/data/b", "value": "2"},
                    {"op": "remove", "path": "/data/a"},
                    {"op": "add", "path": "/list/-", "value": 3},
                    {"op": "test", "path": "/list/2", "value": 3}]),
        )
        .unwrap();
        assert_eq!(t, json!({"data": {"b": "2"}, "list": [1, 2, 3]}));
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
