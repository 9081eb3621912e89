//! Filename format: a template over CDR fields and start-date parts that names each exported
//! file, e.g. `{tenant}/{yyyy}/{MM}/{dd}/{id}/{file}`.

use crate::repository::record::{ArtifactType, Conversation};

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
}
