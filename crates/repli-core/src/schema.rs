//! The JSON Schemas of the strings [`crate::text`] and [`crate::inventory::identifier`]
//! validate, built from the same constants, so that the OpenAPI document states what the
//! server enforces: a value the schema allows is a value the validator accepts, and the other
//! way round.
//!
//! The patterns use the syntax ECMA-262, Python's `re` and Rust's `regex` read alike
//! (`\uXXXX` escapes, classes, bounded repetitions, no look-around). Validators trim their
//! input: each pattern describes the value trimmed (no [`WHITESPACE`] around it), which the
//! server takes as it is.
//!
//! Request types use them through `#[schema(schema_with = …)]`.

use utoipa::openapi::schema::{AnyOfBuilder, Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};

use crate::crisis_log::LogKind;
use crate::exercise::{INJECT_MAX, MAX_RECIPIENTS};
use crate::inventory::IDENTIFIER_MAX;
use crate::text::{EMAIL_LOCAL_MAX, EMAIL_MAX, NAME_MAX, NOTE_MAX, PHONE_MAX, SHORT_TEXT_MAX};

/// Unicode's `White_Space` characters, which `str::trim` removes (a class body).
pub const WHITESPACE: &str = r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Control characters (`char::is_control`, Unicode `Cc`), a class body.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// Control characters but tab and line feed, which free text keeps.
const CONTROL_BUT_TAB_LF: &str = r"\u0000-\u0008\u000b-\u001f\u007f-\u009f";
/// White space that is not a control character.
const SPACES: &str = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Bidirectional controls ([`crate::text::is_bidi_control`]), a class body.
const BIDI: &str = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";

/// A name ([`crate::text::name`]): something visible, no control or bidirectional character.
pub fn name_pattern() -> String {
    format!("^[^{CONTROL}{BIDI}{SPACES}][^{CONTROL}{BIDI}]*$")
}

/// Free text ([`crate::text::free_text`]): tabs and line breaks (`\n`, `\r\n`) kept, other
/// control and bidirectional characters refused; `required` wants something visible.
pub fn text_pattern(required: bool) -> String {
    let inner = format!("(?:[^{CONTROL_BUT_TAB_LF}{BIDI}]|\\r\\n)*");
    if required { format!("^[^{CONTROL}{BIDI}{SPACES}]{inner}$") } else { format!("^{inner}$") }
}

/// A phone number ([`crate::text::phone`]): ten digits starting with `0` and a non-zero digit,
/// or `+` and 8 to 15 digits starting with a non-zero one; spaces, dots and dashes between.
pub fn phone_pattern() -> String {
    r"^(?:\+[ .-]*[1-9](?:[ .-]*[0-9]){7,14}|[ .-]*0[ .-]*[1-9](?:[ .-]*[0-9]){8})[ .-]*$".to_owned()
}

/// An e-mail address ([`crate::text::email`]): a printable ASCII local part without
/// `@ < > " ' , ;`, a domain of two labels at least (letters, digits, inner dashes).
pub fn email_pattern() -> String {
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!(r"^[!#-&(-+\--:=?A-~]{{1,{EMAIL_LOCAL_MAX}}}@(?:{label}\.)+{label}$")
}

/// A serial number or asset tag ([`crate::inventory::identifier`]).
pub fn identifier_pattern() -> String {
    format!("^[A-Za-z0-9_./-]{{1,{IDENTIFIER_MAX}}}$")
}

fn string(pattern: String, min: Option<usize>, max: usize, description: &str, nullable: bool) -> Object {
    let ty = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { SchemaType::Type(Type::String) };
    ObjectBuilder::new()
        .schema_type(ty)
        .min_length(min)
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

/// A required name of at most [`NAME_MAX`] characters.
pub fn name() -> Object {
    string(name_pattern(), Some(1), NAME_MAX, "A name: trimmed, something visible, no control character.", false)
}

/// Free text of at most `max` characters; `required` wants something visible.
pub fn text(max: usize, required: bool, nullable: bool) -> Object {
    let description = if required {
        "Text: trimmed, something visible; tabs and line breaks kept, no other control character."
    } else {
        "Text, may be empty: trimmed; tabs and line breaks kept, no other control character."
    };
    string(text_pattern(required), Some(usize::from(required)), max, description, nullable)
}

/// A required note or reason ([`NOTE_MAX`]).
pub fn note_required() -> Object {
    text(NOTE_MAX, true, false)
}

/// An optional note or reason ([`NOTE_MAX`]), may be null.
pub fn note_optional() -> Object {
    text(NOTE_MAX, false, true)
}

/// A required short text ([`SHORT_TEXT_MAX`]).
pub fn short_text_required() -> Object {
    text(SHORT_TEXT_MAX, true, false)
}

/// An optional short text ([`SHORT_TEXT_MAX`]), may be null.
pub fn short_text_optional() -> Object {
    text(SHORT_TEXT_MAX, false, true)
}

/// A short text that may be absent or null, but not empty when given ([`SHORT_TEXT_MAX`]).
pub fn short_text_if_given() -> Object {
    text(SHORT_TEXT_MAX, true, true)
}

/// A phone number, stored in E.164.
pub fn phone() -> Object {
    string(
        phone_pattern(),
        None,
        PHONE_MAX,
        "A French number (`06 12 34 56 78`) or an international one (`+41 22 123 45 67`); stored in E.164.",
        false,
    )
}

/// An optional e-mail address, may be null.
pub fn email_optional() -> Object {
    string(email_pattern(), None, EMAIL_MAX, "An e-mail address (printable ASCII before the `@`).", true)
}

/// A serial number or asset tag.
pub fn identifier() -> Object {
    string(
        identifier_pattern(),
        Some(1),
        IDENTIFIER_MAX,
        "A serial number or asset tag: letters, digits, `- _ . /`.",
        false,
    )
}

/// A service within the commune: optional text of at most [`NAME_MAX`] characters.
pub fn service() -> Object {
    text(NAME_MAX, false, false)
}

/// An exercise's name.
pub fn exercise_name() -> Object {
    text(crate::exercise::NAME_MAX, true, false)
}

/// An inject's text.
pub fn inject_text() -> Object {
    text(INJECT_MAX, true, false)
}

/// The phone numbers and e-mail addresses an exercise may reach.
pub fn recipients() -> Array {
    // The two patterns are disjoint (an address has an `@`, a number never).
    let either = AnyOfBuilder::new().item(phone()).item(string(
        email_pattern(),
        None,
        EMAIL_MAX,
        "An e-mail address (printable ASCII before the `@`).",
        false,
    ));
    ArrayBuilder::new().items(either).max_items(Some(MAX_RECIPIENTS)).build()
}

/// Longest web login.
pub const LOGIN_MAX: usize = 64;
/// Shortest web password (ANSSI recommends long passphrases for accounts without MFA).
pub const PASSWORD_MIN: usize = 12;
/// Longest web password.
pub const PASSWORD_MAX: usize = 256;

/// A web login: letters, digits, `.`, `-`, `_` or `@`.
pub fn login_pattern() -> String {
    format!("^[A-Za-z0-9._@-]{{1,{LOGIN_MAX}}}$")
}

/// A web login (trimmed).
pub fn login() -> Object {
    string(login_pattern(), Some(1), LOGIN_MAX, "A web login: letters, digits, `. - _ @`.", false)
}

/// A web password: no control character.
pub fn password_pattern() -> String {
    format!("^[^{CONTROL}]*$")
}

/// A web password, taken as typed.
pub fn password() -> Object {
    string(password_pattern(), Some(PASSWORD_MIN), PASSWORD_MAX, "A passphrase, without control characters.", false)
}

/// The names a main-courante entry's kind is given by: the API's, and the French labels the
/// pages show (accents and case aside, the server reads both).
pub fn log_kind_names() -> Vec<String> {
    let mut names: Vec<String> = LogKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    names.extend(["décision", "point de situation"].map(str::to_owned));
    names
}

/// A main-courante entry's kind.
pub fn log_kind() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(log_kind_names()))
        .description(Some("The entry's kind; `inject` in an exercise's crisis only."))
        .build()
}

/// The audit journal's action filter: a known action, or one of their dotted prefixes
/// ([`crate::audit::ActionFilter::accepted`]); anything else is refused (`invalid_query`).
pub fn action_filter() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(crate::audit::ActionFilter::accepted()))
        .description(Some("An action of the log (`crisis.activate`), or a prefix ending in `.` (`crisis.`, `log.`)."))
        .build()
}

/// Longest filter of the audit journal (crisis, commune, actor).
pub const FILTER_MAX: usize = 200;

/// A filter of the audit journal: at most [`FILTER_MAX`] characters, no control character
/// (may be empty: it then matches nothing but itself).
pub fn filter() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .max_length(Some(FILTER_MAX))
        .pattern(Some(format!("^[^{CONTROL}]*$")))
        .description(Some("At most 200 characters, no control character."))
        .build()
}
