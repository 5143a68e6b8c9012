//! RFC 8785 (JCS) written straight from `Serialize` into one buffer: an object's members are
//! written in the order they come, then put in order in place, so a value costs an
//! allocation per object, not several per member as the serializer it replaced did (that one
//! is kept as the oracle of the tests).

use std::borrow::Cow;
use std::ops::Range;

use serde::ser::{self, Error as _, Impossible, Serialize};
use serde_json::Error;

/// Appends the JCS form of `value` to `out`; on error `out` holds part of it.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    value.serialize(Canon { out })
}

struct Canon<'a> {
    out: &'a mut Vec<u8>,
}

/// Numbers as JCS writes them: every one is an IEEE 754 double in JSON's data model
/// (RFC 8785 §3.2.2.3), so integers are converted to `f64` first, as ECMAScript would.
fn number(out: &mut Vec<u8>, value: f64) -> Result<(), Error> {
    if !value.is_finite() {
        return Err(Error::custom(
            "NaN and +/-Infinity are not permitted in JSON",
        ));
    }
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(value).as_bytes());
    Ok(())
}

/// A string with JSON's minimal escapes (RFC 8785 §3.2.2.2): `"`, `\` and the control
/// characters, the five of them with a short form by it, the rest as `\u00xx`.
fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean..i]);
        if short.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(short);
        }
        clean = i + 1;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        number(self.out, v as f64)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        number(self.out, v as f64)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        number(self.out, v as f64)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        number(self.out, v as f64)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        number(self.out, f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        number(self.out, v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    // Serde's externally tagged variants, as serde_json writes them: an object of one
    // member, so nothing to sort.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        open_variant(self.out, variant);
        value.serialize(Canon { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, Error> {
        open_variant(self.out, variant);
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, len.unwrap_or(0), false))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Error> {
        Ok(Object::new(self.out, len, false))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, Error> {
        open_variant(self.out, variant);
        Ok(Object::new(self.out, len, true))
    }
}

fn open_variant(out: &mut Vec<u8>, variant: &str) {
    out.push(b'{');
    string(out, variant);
    out.push(b':');
}

/// An array being written: elements go out as they come.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Inside a tuple variant's `{"variant":`, closed with the array.
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canon { out: self.out })
    }

    fn close(self) -> Result<(), Error> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// serde's four kinds of array, each written by [`Array`] alike.
macro_rules! array_kinds {
    ($($kind:ident :: $add:ident),*) => {$(
        impl ser::$kind for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

array_kinds!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object being written: each member's value is written to the buffer as it comes and
/// its name kept aside; at the end the members are written again in JCS order (names by
/// their UTF-16 code units, §3.2.3) after the values, and moved down over them.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the object starts in `out`: its values follow from here.
    start: usize,
    members: Vec<Member>,
    /// A map's name, between `serialize_key` and `serialize_value`.
    key: Option<Cow<'static, str>>,
    /// Inside a struct variant's `{"variant":`, closed with the object.
    variant: bool,
}

struct Member {
    name: Cow<'static, str>,
    value: Range<usize>,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: usize, variant: bool) -> Self {
        let start = out.len();
        Object {
            out,
            start,
            members: Vec::with_capacity(len),
            key: None,
            variant,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: Cow<'static, str>,
        value: &T,
    ) -> Result<(), Error> {
        let at = self.out.len();
        value.serialize(Canon { out: self.out })?;
        self.members.push(Member {
            name,
            value: at..self.out.len(),
        });
        Ok(())
    }

    fn close(mut self) -> Result<(), Error> {
        self.members
            .sort_unstable_by(|a, b| a.name.encode_utf16().cmp(b.name.encode_utf16()));
        if self.members.windows(2).any(|w| w[0].name == w[1].name) {
            return Err(Error::custom("duplicate object key"));
        }
        let values_end = self.out.len();
        self.out.push(b'{');
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            string(self.out, &m.name);
            self.out.push(b':');
            self.out.extend_from_within(m.value.clone());
        }
        self.out.push(b'}');
        self.out.copy_within(values_end.., self.start);
        let len = self.out.len() - (values_end - self.start);
        self.out.truncate(len);
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(Cow::Owned(key.serialize(Name)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let name = self
            .key
            .take()
            .ok_or_else(|| Error::custom("a map's value came before its key"))?;
        self.member(name, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// serde's two kinds of struct, each written by [`Object`] alike.
macro_rules! struct_kinds {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Object<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.member(Cow::Borrowed(name), value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        }
    )*};
}

struct_kinds!(SerializeStruct, SerializeStructVariant);

/// A map key as the member name serde_json makes of it: a string as it is; a number, a
/// boolean or a unit variant as its text (numbers in JCS's form, as the values are).
struct Name;

fn key_error() -> Error {
    Error::custom("key must be a string")
}

fn number_name(value: f64) -> Result<String, Error> {
    let mut out = Vec::new();
    number(&mut out, value)?;
    String::from_utf8(out).map_err(|_| key_error())
}

impl ser::Serializer for Name {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = Impossible<String, Error>;
    type SerializeTuple = Impossible<String, Error>;
    type SerializeTupleStruct = Impossible<String, Error>;
    type SerializeTupleVariant = Impossible<String, Error>;
    type SerializeMap = Impossible<String, Error>;
    type SerializeStruct = Impossible<String, Error>;
    type SerializeStructVariant = Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        number_name(v as f64)
    }
    fn serialize_i128(self, v: i128) -> Result<String, Error> {
        number_name(v as f64)
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        number_name(v as f64)
    }
    fn serialize_u128(self, v: u128) -> Result<String, Error> {
        number_name(v as f64)
    }
    fn serialize_f32(self, v: f32) -> Result<String, Error> {
        number_name(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<String, Error> {
        number_name(v)
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_error())
    }
}
