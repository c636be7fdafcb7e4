//! Parsing only the parts of a section that its readers look at (series pointers, rule fields).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use vitals_plugin_api::Series;

/// The parts of a JSON document to keep: a tree of object fields, where `*` stands for every
/// element of an array. A document parsed through it keeps those fields (whole at the end of
/// each pointer) and leaves every other field out, so a reader that follows the same pointers
/// finds the same values as in the whole document, at a fraction of the allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    whole: bool,
    fields: BTreeMap<String, Projection>,
}

impl Projection {
    /// Keeps the whole document.
    pub fn whole() -> Self {
        WHOLE.clone()
    }

    /// A projection keeping each of `pointers`.
    pub fn of<'a>(pointers: impl IntoIterator<Item = &'a str>) -> Self {
        let mut p = Self::default();
        for pointer in pointers {
            p.add(pointer);
        }
        p
    }

    /// Keeps what `pointer` (a JSON pointer whose `*` segments walk every array element)
    /// selects, whole. The empty pointer keeps the whole document.
    pub fn add(&mut self, pointer: &str) {
        let mut node = self;
        for segment in pointer.split('/').skip(1) {
            if node.whole {
                return;
            }
            node = node.fields.entry(segment.to_owned()).or_default();
        }
        node.whole = true;
        node.fields.clear();
    }

    /// Keeps what a series reads: its pointer, and the label field of the array element its
    /// last `*` walks.
    pub fn add_series(&mut self, series: &Series) {
        self.add(&series.pointer);
        if let (Some(label), Some(at)) = (&series.label, series.pointer.rfind("/*")) {
            self.add(&format!("{}/*/{label}", &series.pointer[..at]));
        }
    }

    /// Keeps what `other` keeps, too.
    pub fn merge(&mut self, other: &Projection) {
        if self.whole {
            return;
        }
        if other.whole {
            *self = Self::whole();
            return;
        }
        for (k, v) in &other.fields {
            self.fields.entry(k.clone()).or_default().merge(v);
        }
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        !self.whole && self.fields.is_empty()
    }

    /// Parses `json`, keeping what this projection keeps. A document whose top level is not
    /// an object, or parsed through an empty projection, comes back whole.
    pub fn parse(&self, json: &str) -> serde_json::Result<Value> {
        let mut de = serde_json::Deserializer::from_str(json);
        let value = self.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Projection {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.whole || self.fields.is_empty() {
            return Value::deserialize(deserializer);
        }
        deserializer.deserialize_any(Keep(self))
    }
}

/// Keeps a value whole.
static WHOLE: Projection = Projection {
    whole: true,
    fields: BTreeMap::new(),
};

/// Builds the kept parts of one value.
struct Keep<'p>(&'p Projection);

/// Finds a key among the kept fields without copying it.
struct Key<'p>(&'p Projection);

impl<'de, 'p> DeserializeSeed<'de> for Key<'p> {
    type Value = Option<(&'p String, &'p Projection)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'p> Visitor<'_> for Key<'p> {
    type Value = Option<(&'p String, &'p Projection)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.fields.get_key_value(key))
    }
}

impl<'de> Visitor<'de> for Keep<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(found) = map.next_key_seed(Key(self.0))? {
            match found {
                Some((key, sub)) => {
                    let value = map.next_value_seed(sub)?;
                    out.insert(key.clone(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Elements by `*` alone are projected; any other key (an index) keeps them whole, so
        // positions and every pointer through them stay as they are.
        let every = match self.0.fields.get("*") {
            Some(p) if self.0.fields.len() == 1 => p,
            _ => &WHOLE,
        };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(every)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(pointers: &[&str], doc: &Value) -> Value {
        Projection::of(pointers.iter().copied())
            .parse(&doc.to_string())
            .expect("parses")
    }

    /// Guards the projection: kept pointers read the same as in the whole document, others
    /// are left out, arrays keep their length.
    #[test]
    fn keeps_what_the_pointers_select() {
        let doc = json!({
            "containers": [
                {"name": "web", "cpu": 1.5, "id": "abc", "ports": [1, 2], "net": {"rx": 1, "tx": 2}},
                {"name": "db", "cpu": 0.5, "id": "def", "ports": [], "net": {"rx": 3, "tx": 4}},
                7
            ],
            "running": 2,
            "events": [{"kind": "start"}],
            "gpus": [{"a": 1, "b": 2}, {"a": 3, "b": 4}],
        });
        let kept = parse(
            &[
                "/containers/*/cpu",
                "/containers/*/name",
                "/containers/*/net/rx",
                "/events",
                "/gpus/1/a",
            ],
            &doc,
        );
        assert_eq!(
            kept,
            json!({
                "containers": [
                    {"name": "web", "cpu": 1.5, "net": {"rx": 1}},
                    {"name": "db", "cpu": 0.5, "net": {"rx": 3}},
                    7
                ],
                "events": [{"kind": "start"}],
                "gpus": [{"a": 1, "b": 2}, {"a": 3, "b": 4}],
            })
        );
        for pointer in [
            "/containers/1/cpu",
            "/containers/0/net/rx",
            "/events/0/kind",
            "/gpus/1/a",
        ] {
            assert_eq!(kept.pointer(pointer), doc.pointer(pointer), "{pointer}");
        }
        assert_eq!(parse(&[""], &doc), doc);
        assert_eq!(
            parse(&["/containers", "/containers/*/name"], &doc)["containers"],
            doc["containers"]
        );
        assert_eq!(parse(&["/nothing"], &doc), json!({}));
        // Not an object at the top: whole.
        assert_eq!(parse(&["/a"], &json!([1, {"b": 2}])), json!([1, {"b": 2}]));
        // Keys with escapes are matched once unescaped.
        let escaped: Value = Projection::of(["/a\"b"])
            .parse(r#"{"a\"b": 1, "c": 2}"#)
            .expect("parses");
        assert_eq!(escaped, json!({"a\"b": 1}));
        assert!(Projection::of(["/a"]).parse("{\"a\": 1").is_err());
        assert!(Projection::of(["/a"]).parse("{\"a\": 1} x").is_err());
    }

    /// Guards merging: the union of two projections keeps what each keeps.
    #[test]
    fn merged_projections_keep_both() {
        let mut p = Projection::of(["/a/*/x"]);
        p.merge(&Projection::of(["/a/*/y", "/b"]));
        assert_eq!(p, Projection::of(["/a/*/x", "/a/*/y", "/b"]));
        p.merge(&Projection::whole());
        assert_eq!(p, Projection::whole());
        assert!(Projection::default().is_empty());
        assert!(!Projection::of(["/a"]).is_empty());
    }
}
