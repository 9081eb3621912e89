//! Filename format: a template over CDR fields and start-date parts that names each exported
//! file, e.g. `{tenant}/{yyyy}/{MM}/{dd}/{id}/{file}`.
//!
//! A format must give every exported file its own key, or one object silently replaces another.
//! [`Template::check_distinct`] accepts only formats where that holds for every record: ids,
//! tenants and file names are validated as single path components (no `/`, never empty, `.` or
//! `..`), so a format with `{id}` and `{tenant}` each a component of their own and `{file}` the
//! whole last component renders keys from which those three values can be read back.

use crate::repository::record::{ArtifactType, Conversation};

/// Default filename format of export policies.
pub const DEFAULT_FILENAME_FORMAT: &str = "{tenant}/{yyyy}/{MM}/{dd}/{id}/{file}";

/// A placeholder of the filename format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Tenant,
    Id,
    Type,
    Platform,
    Direction,
    User,
    Extension,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    File,
    Stem,
    Ext,
    ArtifactType,
}

const FIELDS: &[(&str, Field)] = &[
    ("tenant", Field::Tenant),
    ("id", Field::Id),
    ("type", Field::Type),
    ("platform", Field::Platform),
    ("direction", Field::Direction),
    ("user", Field::User),
    ("extension", Field::Extension),
    ("yyyy", Field::Year),
    ("MM", Field::Month),
    ("dd", Field::Day),
    ("HH", Field::Hour),
    ("mm", Field::Minute),
    ("ss", Field::Second),
    ("file", Field::File),
    ("stem", Field::Stem),
    ("ext", Field::Ext),
    ("artifact_type", Field::ArtifactType),
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(Field),
}

/// A parsed, validated filename format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// The file being named: an artifact, or the conversation's metadata file.
pub struct FileName<'a> {
    pub file: &'a str,
    pub artifact_type: Option<ArtifactType>,
}

fn sanitize(value: &str, out: &mut String) {
    if value.is_empty() || value == "." || value == ".." {
        out.push('_');
        return;
    }
    out.extend(value.chars().map(|c| {
        if c == '/' || c == '\\' || c.is_control() {
            '_'
        } else {
            c
        }
    }));
}

impl Template {
    /// Parses a format; `{{` and `}}` are literal braces.
    pub fn parse(format: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    let field = FIELDS
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, f)| *f)
                        .ok_or_else(|| {
                            format!(
                                "unknown placeholder `{{{name}}}` (known: {})",
                                FIELDS
                                    .iter()
                                    .map(|(n, _)| format!("{{{n}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                }
                '}' => return Err("unmatched `}` (write `}}` for a literal brace)".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let has = |f: Field| pieces.contains(&Piece::Field(f));
        if !has(Field::Id) || !(has(Field::File) || has(Field::Stem)) {
            return Err(
                "must contain {id} and {file} (or {stem}) so that every exported file gets its own name"
                    .into(),
            );
        }
        if format.starts_with('/') || format.split('/').any(|c| c == ".." || c == ".") {
            return Err("must be a relative path without `.` or `..` components".into());
        }
        Ok(Template { pieces })
    }

    /// Refuses a format that can render the same key for two different files: `{id}` must be
    /// a whole path component, `{file}` the whole last component, and `{tenant}` a whole
    /// component unless the policy exports one tenant only (`per_tenant`). Other components
    /// (dates, literals) may be anything: they only ever add distinctions. The error names a
    /// format built from this one that passes.
    pub fn check_distinct(&self, per_tenant: bool) -> Result<(), String> {
        let components = self.components();
        let alone = |f: Field| components.iter().any(|c| c[..] == [Piece::Field(f)]);
        let last_is_file = components
            .last()
            .is_some_and(|c| c[..] == [Piece::Field(Field::File)]);
        if alone(Field::Id) && last_is_file && (per_tenant || alone(Field::Tenant)) {
            return Ok(());
        }
        let tenant_rule = if per_tenant {
            ""
        } else {
            ", `{tenant}` a component of its own (or a filter naming one tenant)"
        };
        Err(format!(
            "two files could get the same key (one object would replace another): `{{id}}` \
             must be a path component of its own{tenant_rule} and `{{file}}` the whole last \
             component; for example `{}`",
            self.suggestion(per_tenant)
        ))
    }

    /// The pieces of each `/`-separated path component.
    fn components(&self) -> Vec<Vec<Piece>> {
        let mut components = vec![Vec::new()];
        for piece in &self.pieces {
            match piece {
                Piece::Field(_) => components.last_mut().expect("one").push(piece.clone()),
                Piece::Literal(l) => {
                    for (i, part) in l.split('/').enumerate() {
                        if i > 0 {
                            components.push(Vec::new());
                        }
                        if !part.is_empty() {
                            let c = components.last_mut().expect("one");
                            c.push(Piece::Literal(part.to_owned()));
                        }
                    }
                }
            }
        }
        components
    }

    /// A format that keeps this one's folders that hold neither the conversation's nor the
    /// file's identity, and ends in `{id}/{file}` (after `{tenant}` when needed).
    fn suggestion(&self, per_tenant: bool) -> String {
        let identity = [
            Field::Id,
            Field::File,
            Field::Stem,
            Field::Ext,
            Field::Tenant,
        ];
        let text = |c: &[Piece]| -> String {
            c.iter()
                .map(|p| match p {
                    Piece::Literal(l) => l.replace('{', "{{").replace('}', "}}"),
                    Piece::Field(f) => {
                        let name = FIELDS.iter().find(|(_, g)| g == f).expect("known").0;
                        format!("{{{name}}}")
                    }
                })
                .collect()
        };
        let mut kept: Vec<String> = Vec::new();
        let mut has_tenant = false;
        for c in self.components() {
            if c[..] == [Piece::Field(Field::Tenant)] {
                has_tenant = true;
            } else if c.is_empty()
                || c.iter()
                    .any(|p| matches!(p, Piece::Field(f) if identity.contains(f)))
            {
                continue;
            }
            kept.push(text(&c));
        }
        if !per_tenant && !has_tenant {
            kept.insert(0, "{tenant}".to_owned());
        }
        kept.push("{id}".to_owned());
        kept.push("{file}".to_owned());
        kept.join("/")
    }

    /// The key of `name` of conversation `c`; date fields are the start's in timezone `tz`.
    pub fn render(&self, c: &Conversation, name: &FileName<'_>, tz: chrono_tz::Tz) -> String {
        let mut out = String::new();
        let start = c.start.with_timezone(&tz);
        let (stem, ext) = match name.file.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s, e),
            _ => (name.file, ""),
        };
        let first = |f: fn(&crate::repository::record::Participant) -> Option<&String>| {
            c.participants
                .iter()
                .find_map(f)
                .map_or("unknown", |s| s.as_str())
        };
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Field(f) => {
                    let value: String = match f {
                        Field::Tenant => c.tenant.clone(),
                        Field::Id => c.id.clone(),
                        Field::Type => c.kind.to_string(),
                        Field::Platform => c.source_platform.clone(),
                        Field::Direction => c.direction.to_string(),
                        Field::User => first(|p| p.user.as_ref()).to_owned(),
                        Field::Extension => first(|p| p.extension.as_ref()).to_owned(),
                        Field::Year => start.format("%Y").to_string(),
                        Field::Month => start.format("%m").to_string(),
                        Field::Day => start.format("%d").to_string(),
                        Field::Hour => start.format("%H").to_string(),
                        Field::Minute => start.format("%M").to_string(),
                        Field::Second => start.format("%S").to_string(),
                        Field::File => name.file.to_owned(),
                        Field::Stem => stem.to_owned(),
                        Field::Ext => ext.to_owned(),
                        Field::ArtifactType => name
                            .artifact_type
                            .map_or("metadata", |t| t.as_str())
                            .to_owned(),
                    };
                    sanitize(&value, &mut out);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Conversation {
        serde_json::from_str(
            r#"{"schema":1,"id":"c/1","tenant":"acme","type":"voice","source_platform":"cisco",
            "direction":"inbound","start":"2026-01-02T23:30:05-05:00","end":"2026-01-02T23:31:00-05:00",
            "participants":[{"extension":"1001","role":"agent"},{"user":"bob","role":"customer"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn renders_date_fields_in_the_policy_timezone() {
        let t = Template::parse(
            "{tenant}/{yyyy}{MM}{dd}-{HH}{mm}{ss}/{user}_{extension}_{id}_{stem}.{ext} {{x}}",
        )
        .unwrap();
        let name = FileName {
            file: "a.wav",
            artifact_type: Some(ArtifactType::AudioRecording),
        };
        assert_eq!(
            t.render(&conv(), &name, chrono_tz::America::New_York),
            "acme/20260102-233005/bob_1001_c_1_a.wav {x}"
        );
        assert_eq!(
            t.render(&conv(), &name, chrono_tz::Tz::UTC),
            "acme/20260103-043005/bob_1001_c_1_a.wav {x}"
        );
        assert_eq!(
            t.render(&conv(), &name, chrono_tz::Asia::Kolkata),
            "acme/20260103-100005/bob_1001_c_1_a.wav {x}"
        );
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(
            Template::parse("{tenant}/{file}")
                .unwrap_err()
                .contains("{id}")
        );
        assert!(
            Template::parse("{id}/{nope}")
                .unwrap_err()
                .contains("unknown placeholder `{nope}`")
        );
        assert!(Template::parse("../{id}/{file}").is_err());
        assert!(Template::parse("{id}/{file}}").is_err());
    }

    fn distinct(format: &str, per_tenant: bool) -> Result<(), String> {
        Template::parse(format).unwrap().check_distinct(per_tenant)
    }

    #[test]
    fn formats_that_can_merge_two_keys_are_refused_with_one_that_works() {
        for (format, per_tenant, works) in [
            ("{id}-{file}", true, "{id}/{file}"),
            ("{tenant}/{id}-{file}", false, "{tenant}/{id}/{file}"),
            ("{tenant}/{id}/{stem}", false, "{tenant}/{id}/{file}"),
            ("{tenant}/{id}/{stem}.{ext}", false, "{tenant}/{id}/{file}"),
            ("{tenant}/{id}/x_{file}", false, "{tenant}/{id}/{file}"),
            ("{yyyy}/{id}/{file}", false, "{tenant}/{yyyy}/{id}/{file}"),
            ("{tenant}-{yyyy}/{id}/{file}", false, "{tenant}/{id}/{file}"),
            (
                "{tenant}/{MM}{{x}}/{user}_{id}/{file}",
                false,
                "{tenant}/{MM}{{x}}/{id}/{file}",
            ),
        ] {
            let err = distinct(format, per_tenant).unwrap_err();
            assert!(
                err.ends_with(&format!("for example `{works}`")),
                "{format}: {err}"
            );
            assert_eq!(distinct(works, per_tenant), Ok(()), "{works}");
        }
    }

    #[test]
    fn formats_with_whole_identity_components_are_accepted() {
        assert_eq!(
            Template::parse(DEFAULT_FILENAME_FORMAT)
                .unwrap()
                .check_distinct(false),
            Ok(())
        );
        assert_eq!(distinct("{id}/{file}", true), Ok(()));
        assert_eq!(
            distinct("x/{tenant}/{yyyy}-{MM}/{id}/{user}/{file}", false),
            Ok(())
        );
        assert!(
            distinct("{id}/{file}", false)
                .unwrap_err()
                .contains("{tenant}")
        );
    }
}
