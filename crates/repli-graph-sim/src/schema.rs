//! Request-body validation against the shipped subset of Graph's v1.0 CSDL.
//!
//! `schema/graph-v1.0-subset.json` is extracted from `v1.0-Prod.csdl` by `schema/extract.py`
//! and embedded here, so the simulator never reads a path outside the repository. Graph
//! answers 400 when a body names a property its entity type does not have; so does this.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::LazyLock;

const SUBSET: &str = include_str!("../schema/graph-v1.0-subset.json");

#[derive(Debug, Deserialize)]
struct TypeDef {
    base: Option<String>,
    properties: BTreeMap<String, String>,
    navigation: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Subset {
    types: BTreeMap<String, TypeDef>,
    actions: BTreeMap<String, BTreeMap<String, String>>,
}

static SCHEMA: LazyLock<Option<Subset>> = LazyLock::new(|| serde_json::from_str(SUBSET).ok());

/// Whether the embedded schema parsed (checked by a test and at simulator start).
pub fn loaded() -> bool {
    SCHEMA.is_some()
}

fn lookup<'a>(schema: &'a Subset, type_name: &str, property: &str) -> Option<(&'a str, bool)> {
    let mut current = Some(type_name);
    while let Some(name) = current {
        let def = schema.types.get(name)?;
        if let Some(t) = def.properties.get(property) {
            return Some((t.as_str(), false));
        }
        if let Some(t) = def.navigation.get(property) {
            return Some((t.as_str(), true));
        }
        current = def.base.as_deref();
    }
    None
}

fn inner_type(edm: &str) -> (&str, bool) {
    match edm.strip_prefix("Collection(").and_then(|s| s.strip_suffix(')')) {
        Some(inner) => (inner.trim_start_matches("graph."), true),
        None => (edm.trim_start_matches("graph."), false),
    }
}

/// Checks `body` against entity or complex type `type_name`; returns Graph's message on failure.
pub fn validate(type_name: &str, body: &Value) -> Result<(), String> {
    let Some(schema) = SCHEMA.as_ref() else { return Err("simulator schema failed to load".into()) };
    let Value::Object(map) = body else {
        return Err(format!("Cannot read the request body as an object of type 'microsoft.graph.{type_name}'."));
    };
    for (key, value) in map {
        if key.starts_with("@odata.") {
            continue;
        }
        // `members@odata.bind`: the part before the annotation must be a navigation property.
        let (name, annotation) = match key.split_once('@') {
            Some((name, annotation)) => (name, Some(annotation)),
            None => (key.as_str(), None),
        };
        let Some((edm, navigation)) = lookup(schema, type_name, name) else {
            return Err(format!("Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."));
        };
        if annotation.is_some() {
            if !navigation {
                return Err(format!(
                    "The property '{name}' on type 'microsoft.graph.{type_name}' is not a navigation property."
                ));
            }
            continue;
        }
        let (inner, collection) = inner_type(edm);
        if schema.types.contains_key(inner) && !navigation {
            match (collection, value) {
                (true, Value::Array(items)) => {
                    for item in items {
                        validate(inner, item)?;
                    }
                }
                (false, Value::Object(_)) => validate(inner, value)?,
                (_, Value::Null) => {}
                _ => return Err(format!("Invalid value for property '{name}' of type '{edm}'.")),
            }
        }
    }
    Ok(())
}

/// Checks the parameters of bound action `key` (e.g. `user.assignLicense`).
pub fn validate_action(key: &str, body: &Value) -> Result<(), String> {
    let Some(schema) = SCHEMA.as_ref() else { return Err("simulator schema failed to load".into()) };
    let Some(params) = schema.actions.get(key) else { return Err(format!("Unknown action '{key}'.")) };
    let empty = serde_json::Map::new();
    let map = match body {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err("The action parameters must be a JSON object.".into()),
    };
    for (name, value) in map {
        let Some(edm) = params.get(name) else {
            return Err(format!(
                "The parameter '{name}' in the request payload is not a valid parameter for the operation '{}'.",
                key.rsplit('.').next().unwrap_or(key)
            ));
        };
        let (inner, collection) = inner_type(edm);
        if schema.types.contains_key(inner) {
            match (collection, value) {
                (true, Value::Array(items)) => {
                    for item in items {
                        validate(inner, item)?;
                    }
                }
                (false, Value::Object(_)) => validate(inner, value)?,
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_loads_and_knows_inherited_properties() {
        assert!(loaded());
        // `id` comes from entity, `deletedDateTime` from directoryObject.
        assert!(validate("user", &json!({"id": "x", "deletedDateTime": null, "displayName": "A"})).is_ok());
    }

    #[test]
    fn unknown_property_is_named() {
        let err = validate("user", &json!({"displayName": "A", "favouriteColour": "blue"})).unwrap_err();
        assert!(err.contains("'favouriteColour'") && err.contains("microsoft.graph.user"), "{err}");
    }

    #[test]
    fn nested_complex_types_are_checked() {
        assert!(
            validate("user", &json!({"passwordProfile": {"password": "x", "forceChangePasswordNextSignIn": true}}))
                .is_ok()
        );
        let err = validate("user", &json!({"passwordProfile": {"pwd": "x"}})).unwrap_err();
        assert!(err.contains("'pwd'") && err.contains("passwordProfile"), "{err}");
    }

    #[test]
    fn binds_need_navigation_properties() {
        assert!(
            validate("group", &json!({"members@odata.bind": ["https://graph.microsoft.com/v1.0/users/1"]})).is_ok()
        );
        assert!(validate("group", &json!({"displayName@odata.bind": []})).is_err());
    }

    #[test]
    fn action_parameters_are_checked() {
        assert!(
            validate_action(
                "user.assignLicense",
                &json!({"addLicenses": [{"skuId": "x", "disabledPlans": []}], "removeLicenses": []})
            )
            .is_ok()
        );
        assert!(validate_action("user.assignLicense", &json!({"licences": []})).is_err());
        assert!(validate_action("onlineMeeting.createOrGet", &json!({"externalId": "x", "subject": "s"})).is_ok());
        assert!(validate("user", &json!("not an object")).is_err());
    }
}
