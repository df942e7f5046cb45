//! Reads the values workerd stores (V8's structured-clone serialization,
//! what `storage.put` writes) as JSON, for pyflare's loopback-only routes and
//! its `do` command: strings, numbers, booleans, null, objects, arrays,
//! Maps, Sets, Dates and ArrayBuffers. Anything else (or damaged bytes)
//! shows as `{"$v8": "<hex>"}`.
//!
//! Format: V8's `ValueSerializer` (src/objects/value-serializer.cc), as
//! Node's `v8.serialize` writes it: a `0xFF <version>` header, then one
//! tagged value.

use serde_json::{Map, Value, json};

/// `bytes` as JSON (never fails: unreadable values come back as hex).
pub fn to_json(bytes: &[u8]) -> Value {
    let mut reader = Reader { bytes, at: 0 };
    match reader.header().and_then(|()| reader.value(0)) {
        Some(value) => value,
        None => json!({ "$v8": hex::encode(bytes) }),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Deepest nesting read (the format allows more; a store rarely needs it).
const MAX_DEPTH: usize = 64;

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn header(&mut self) -> Option<()> {
        if self.bytes.first() == Some(&0xff) {
            self.at = 1;
            self.varint()?;
        }
        Some(())
    }

    fn tag(&mut self) -> Option<u8> {
        loop {
            match self.byte()? {
                0 => continue,
                tag => return Some(tag),
            }
        }
    }

    fn string(&mut self, tag: u8) -> Option<String> {
        let len = usize::try_from(self.varint()?).ok()?;
        let raw = self.take(len)?;
        Some(match tag {
            b'"' => raw.iter().map(|&b| char::from(b)).collect(),
            b'c' => {
                let units: Vec<u16> = raw
                    .chunks_exact(2)
                    .map(|p| u16::from_le_bytes([p[0], p[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            }
            _ => String::from_utf8_lossy(raw).into_owned(),
        })
    }

    fn double(&mut self) -> Option<f64> {
        let raw = self.take(8)?;
        Some(f64::from_le_bytes(raw.try_into().ok()?))
    }

    fn number(f: f64) -> Value {
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            json!(f as i64)
        } else {
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    }

    fn key(value: Value) -> String {
        match value {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// Reads values `per` at a time (1 or 2) until the `end` tag and its
    /// count: the members of an object, Map or Set.
    fn until(&mut self, end: u8, per: usize, depth: usize) -> Option<Vec<[Value; 2]>> {
        let mut out = Vec::new();
        loop {
            if self.bytes.get(self.at) == Some(&end) {
                self.at += 1;
                self.varint()?;
                return Some(out);
            }
            let first = self.value(depth + 1)?;
            let second = if per == 2 {
                self.value(depth + 1)?
            } else {
                Value::Null
            };
            out.push([first, second]);
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let tag = self.tag()?;
        Some(match tag {
            b'_' | b'0' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'I' => {
                let raw = self.varint()?;
                json!(((raw >> 1) as i64) ^ -((raw & 1) as i64))
            }
            b'U' => json!(self.varint()?),
            b'N' => Self::number(self.double()?),
            b'D' => json!({ "$date": Self::number(self.double()?) }),
            b'"' | b'c' | b'S' => Value::String(self.string(tag)?),
            b'o' => {
                let mut map = Map::new();
                for [key, value] in self.until(b'{', 2, depth)? {
                    map.insert(Self::key(key), value);
                }
                Value::Object(map)
            }
            b'A' => {
                let len = self.varint()?;
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(self.value(depth + 1)?);
                }
                // The end tag; an array with properties besides its
                // elements is not read.
                if self.tag()? != b'$' {
                    return None;
                }
                self.varint()?;
                self.varint()?;
                Value::Array(items)
            }
            b';' => {
                let pairs: Vec<Value> = self
                    .until(b':', 2, depth)?
                    .into_iter()
                    .map(|[key, value]| json!([key, value]))
                    .collect();
                json!({ "$map": pairs })
            }
            b'\'' => {
                let items: Vec<Value> = self
                    .until(b',', 1, depth)?
                    .into_iter()
                    .map(|[item, _]| item)
                    .collect();
                json!({ "$set": items })
            }
            b'B' => {
                let len = usize::try_from(self.varint()?).ok()?;
                let raw = self.take(len)?;
                json!({ "$bytes": hex::encode(raw) })
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_node_serialized_read_as_json() {
        // Bytes from Node 26's v8.serialize.
        let cases: [(&[u8], Value); 9] = [
            (&[0xff, 0x0f, 0x49, 0x54], json!(42)),
            (&[0xff, 0x0f, 0x22, 0x02, 0x68, 0x69], json!("hi")),
            (&[0xff, 0x0f, 0x30], Value::Null),
            (
                &[0xff, 0x0f, 0x6f, 0x22, 0x01, 0x61, 0x49, 0x02, 0x7b, 0x01],
                json!({"a": 1}),
            ),
            (
                &[0xff, 0x0f, 0x41, 0x02, 0x54, 0x46, 0x24, 0x00, 0x02],
                json!([true, false]),
            ),
            (
                &[0xff, 0x0f, 0x3b, 0x22, 0x01, 0x6b, 0x49, 0x02, 0x3a, 0x02],
                json!({"$map": [["k", 1]]}),
            ),
            (
                &[0xff, 0x0f, 0x44, 0, 0, 0, 0, 0, 0, 0x14, 0x40],
                json!({"$date": 5}),
            ),
            (
                &[0xff, 0x0f, 0x27, 0x49, 0x02, 0x2c, 0x01],
                json!({"$set": [1]}),
            ),
            (&[0x01, 0x02], json!({"$v8": "0102"})),
        ];
        for (bytes, expected) in cases {
            assert_eq!(to_json(bytes), expected, "{bytes:02x?}");
        }
    }
}
