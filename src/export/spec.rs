//! `-o/--output` specifications, parsed as `docker buildx build` parses them.
//!
//! A spec is one CSV record of `key=value` fields (Go's `encoding/csv` rules: a field in
//! double quotes may hold commas, `""` is a literal quote), so several names are written
//! `type=image,"name=a:1,b:2"`. Keys are case-insensitive and trimmed; values are taken as
//! written. A spec without `type=` that is a single field is a shorthand: `-` means
//! `type=tar,dest=-`, anything else `type=local,dest=THAT`.
//!
//! kiln accepts, per type (anything else is an error naming the key):
//!
//! | type       | keys                                                     |
//! |------------|----------------------------------------------------------|
//! | `oci`      | `dest` (required; `-` = stdout), `name`, `compression`, `oci-mediatypes` |
//! | `docker`   | `dest` (required; `-` = stdout), `name`, `compression`, `oci-mediatypes` |
//! | `local`    | `dest` (required, a directory)                            |
//! | `tar`      | `dest` (required; `-` = stdout)                           |
//! | `image`    | `name`, `push`, `compression`, `oci-mediatypes`           |
//! | `registry` | `name`, `compression`, `oci-mediatypes`                   |
//!
//! Media types default as in BuildKit: OCI for `oci`, `image` and `registry`, Docker for
//! `docker`; `compression=zstd` implies OCI media types and conflicts with an explicit
//! `oci-mediatypes=false`.

use crate::image::MediaTypes;
use crate::layer::Compression;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A parsed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout as a tar stream.
    Oci { dest: Destination, image: ImageOutput },
    /// A `docker load`-able tar stream.
    Docker { dest: Destination, image: ImageOutput },
    /// The flattened root filesystem in a directory.
    Local { dest: PathBuf },
    /// The flattened root filesystem as a tar stream.
    Tar { dest: Destination },
    /// kiln's local image store, and a registry too with `push=true`.
    Image { image: ImageOutput, push: bool },
    /// A registry (push only).
    Registry { image: ImageOutput },
}

/// Where a tar stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    File(PathBuf),
    /// `dest=-`.
    Stdout,
}

/// The options of outputs that carry an image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageOutput {
    /// `name=`, as written (the caller normalises them; empty means "the `-t` tags").
    pub names: Vec<String>,
    /// `compression=`; `None` keeps the layers as stored.
    pub compression: Option<Compression>,
    /// The media types, defaults applied.
    pub media_types: MediaTypes,
}

/// Why an output spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty output specification")]
    Empty,
    #[error("invalid output specification {spec:?}: {reason}")]
    Csv { spec: String, reason: &'static str },
    #[error("invalid output field {field:?}: expected key=value")]
    NotKeyValue { field: String },
    #[error(
        "output specification {spec:?} has no type= (expected oci, docker, local, tar, image or registry)"
    )]
    MissingType { spec: String },
    #[error("unknown output type {kind:?} (expected oci, docker, local, tar, image or registry)")]
    UnknownType { kind: String },
    #[error("unknown key {key:?} for output type={kind} (valid keys: {valid})")]
    UnknownKey { key: String, kind: &'static str, valid: &'static str },
    #[error("key {key:?} is given more than once in the output specification")]
    DuplicateKey { key: String },
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    InvalidValue { key: &'static str, value: String, expected: &'static str },
    #[error("output type={kind} needs dest=PATH")]
    MissingDest { kind: &'static str },
    #[error(
        "output type=local writes a directory and cannot write to stdout (dest=-); use type=tar"
    )]
    LocalToStdout,
    #[error("empty image name in name={value:?}")]
    EmptyName { value: String },
    #[error("compression=zstd conflicts with oci-mediatypes=false")]
    ZstdWithDockerTypes,
}

impl Output {
    /// Parses one `-o` value.
    pub fn parse(spec: &str) -> Result<Output, SpecError> {
        if spec.is_empty() {
            return Err(SpecError::Empty);
        }
        let fields = split_fields(spec)?;
        if fields.len() == 1 && fields[0] == spec && !spec.starts_with("type=") {
            return Ok(if spec == "-" {
                Output::Tar { dest: Destination::Stdout }
            } else {
                Output::Local { dest: PathBuf::from(spec) }
            });
        }
        let mut kind = None;
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(SpecError::NotKeyValue { field });
            };
            let key = key.trim().to_lowercase();
            if !seen.insert(key.clone()) {
                return Err(SpecError::DuplicateKey { key });
            }
            if key == "type" {
                kind = Some(value.to_owned());
            } else {
                attrs.push((key, value.to_owned()));
            }
        }
        let Some(kind) = kind else {
            return Err(SpecError::MissingType { spec: spec.to_owned() });
        };
        let kind = OutputKind::parse(&kind)?;
        kind.build(attrs)
    }

    /// Whether the output produces an image (and so an image id for `--iidfile`).
    pub fn produces_image(&self) -> bool {
        !matches!(self, Output::Local { .. } | Output::Tar { .. })
    }

    /// The image options, for outputs that carry an image.
    pub fn image(&self) -> Option<&ImageOutput> {
        match self {
            Output::Oci { image, .. }
            | Output::Docker { image, .. }
            | Output::Image { image, .. }
            | Output::Registry { image } => Some(image),
            Output::Local { .. } | Output::Tar { .. } => None,
        }
    }

    /// The `type=` of this output.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Oci { .. } => "oci",
            Output::Docker { .. } => "docker",
            Output::Local { .. } => "local",
            Output::Tar { .. } => "tar",
            Output::Image { .. } => "image",
            Output::Registry { .. } => "registry",
        }
    }
}

#[derive(Clone, Copy)]
enum OutputKind {
    Oci,
    Docker,
    Local,
    Tar,
    Image,
    Registry,
}

impl OutputKind {
    fn parse(kind: &str) -> Result<OutputKind, SpecError> {
        Ok(match kind {
            "oci" => OutputKind::Oci,
            "docker" => OutputKind::Docker,
            "local" => OutputKind::Local,
            "tar" => OutputKind::Tar,
            "image" => OutputKind::Image,
            "registry" => OutputKind::Registry,
            other => return Err(SpecError::UnknownType { kind: other.to_owned() }),
        })
    }

    fn name(self) -> &'static str {
        match self {
            OutputKind::Oci => "oci",
            OutputKind::Docker => "docker",
            OutputKind::Local => "local",
            OutputKind::Tar => "tar",
            OutputKind::Image => "image",
            OutputKind::Registry => "registry",
        }
    }

    fn valid_keys(self) -> &'static str {
        match self {
            OutputKind::Oci | OutputKind::Docker => "dest, name, compression, oci-mediatypes",
            OutputKind::Local | OutputKind::Tar => "dest",
            OutputKind::Image => "name, push, compression, oci-mediatypes",
            OutputKind::Registry => "name, compression, oci-mediatypes",
        }
    }

    fn build(self, attrs: Vec<(String, String)>) -> Result<Output, SpecError> {
        let mut dest = None;
        let mut names = Vec::new();
        let mut compression = None;
        let mut oci_mediatypes = None;
        let mut push = false;
        let valid = self.valid_keys();
        for (key, value) in attrs {
            if !valid.split(", ").any(|k| k == key) {
                return Err(SpecError::UnknownKey { key, kind: self.name(), valid });
            }
            match key.as_str() {
                "dest" => dest = Some(value),
                "name" => names = parse_names(&value)?,
                "compression" => compression = Some(parse_compression(&value)?),
                "oci-mediatypes" => oci_mediatypes = Some(parse_bool("oci-mediatypes", &value)?),
                "push" => push = parse_bool("push", &value)?,
                _ => unreachable!("every valid key is handled"),
            }
        }
        let default_types = match self {
            OutputKind::Docker => MediaTypes::Docker,
            _ => MediaTypes::Oci,
        };
        let media_types = match (oci_mediatypes, compression) {
            (Some(false), Some(Compression::Zstd)) => return Err(SpecError::ZstdWithDockerTypes),
            (Some(true), _) | (None, Some(Compression::Zstd)) => MediaTypes::Oci,
            (Some(false), _) => MediaTypes::Docker,
            (None, _) => default_types,
        };
        let image = ImageOutput { names, compression, media_types };
        let tar_dest = |dest: Option<String>| match dest.as_deref() {
            None | Some("") => Err(SpecError::MissingDest { kind: self.name() }),
            Some("-") => Ok(Destination::Stdout),
            Some(path) => Ok(Destination::File(PathBuf::from(path))),
        };
        Ok(match self {
            OutputKind::Oci => Output::Oci { dest: tar_dest(dest)?, image },
            OutputKind::Docker => Output::Docker { dest: tar_dest(dest)?, image },
            OutputKind::Tar => Output::Tar { dest: tar_dest(dest)? },
            OutputKind::Local => match tar_dest(dest)? {
                Destination::Stdout => return Err(SpecError::LocalToStdout),
                Destination::File(dest) => Output::Local { dest },
            },
            OutputKind::Image => Output::Image { image, push },
            OutputKind::Registry => Output::Registry { image },
        })
    }
}

fn parse_names(value: &str) -> Result<Vec<String>, SpecError> {
    let names: Vec<String> = value.split(',').map(str::to_owned).collect();
    if names.iter().any(String::is_empty) {
        return Err(SpecError::EmptyName { value: value.to_owned() });
    }
    Ok(names)
}

fn parse_compression(value: &str) -> Result<Compression, SpecError> {
    match value {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "uncompressed" => Ok(Compression::Uncompressed),
        _ => Err(SpecError::InvalidValue {
            key: "compression",
            value: value.to_owned(),
            expected: "gzip, zstd or uncompressed",
        }),
    }
}

/// Go's `strconv.ParseBool`, which BuildKit uses for its boolean options.
pub(crate) fn parse_bool(key: &'static str, value: &str) -> Result<bool, SpecError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => {
            Err(SpecError::InvalidValue { key, value: value.to_owned(), expected: "true or false" })
        }
    }
}

/// Splits one CSV record into fields with Go's `encoding/csv` rules (no lazy quotes).
pub(crate) fn split_fields(spec: &str) -> Result<Vec<String>, SpecError> {
    let csv_error = |reason| SpecError::Csv { spec: spec.to_owned(), reason };
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(csv_error("a quoted field is not closed")),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(csv_error("extraneous or missing \" in quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(csv_error("bare \" in non-quoted field")),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Output {
        Output::parse(spec).unwrap_or_else(|err| panic!("{spec}: {err}"))
    }

    fn image(
        names: &[&str],
        compression: Option<Compression>,
        media_types: MediaTypes,
    ) -> ImageOutput {
        ImageOutput {
            names: names.iter().map(|s| s.to_string()).collect(),
            compression,
            media_types,
        }
    }

    fn file(path: &str) -> Destination {
        Destination::File(PathBuf::from(path))
    }

    #[test]
    fn every_type_with_its_defaults() {
        assert_eq!(
            parse("type=oci,dest=out.tar"),
            Output::Oci { dest: file("out.tar"), image: image(&[], None, MediaTypes::Oci) }
        );
        assert_eq!(
            parse("type=docker,dest=-"),
            Output::Docker {
                dest: Destination::Stdout,
                image: image(&[], None, MediaTypes::Docker)
            }
        );
        assert_eq!(parse("type=local,dest=out"), Output::Local { dest: PathBuf::from("out") });
        assert_eq!(parse("type=tar,dest=rootfs.tar"), Output::Tar { dest: file("rootfs.tar") });
        assert_eq!(parse("type=tar,dest=-"), Output::Tar { dest: Destination::Stdout });
        assert_eq!(
            parse("type=image"),
            Output::Image { image: image(&[], None, MediaTypes::Oci), push: false }
        );
        assert_eq!(
            parse("type=image,name=app:1,push=true"),
            Output::Image { image: image(&["app:1"], None, MediaTypes::Oci), push: true }
        );
        assert_eq!(
            parse("type=registry,name=ghcr.io/x/y:2"),
            Output::Registry { image: image(&["ghcr.io/x/y:2"], None, MediaTypes::Oci) }
        );
    }

    #[test]
    fn shorthands() {
        assert_eq!(parse("out/dir"), Output::Local { dest: PathBuf::from("out/dir") });
        assert_eq!(parse("-"), Output::Tar { dest: Destination::Stdout });
    }

    #[test]
    fn compression_and_media_types() {
        let cases: &[(&str, Option<Compression>, MediaTypes)] = &[
            ("type=oci,dest=f,compression=gzip", Some(Compression::Gzip), MediaTypes::Oci),
            (
                "type=oci,dest=f,compression=uncompressed",
                Some(Compression::Uncompressed),
                MediaTypes::Oci,
            ),
            ("type=oci,dest=f,oci-mediatypes=false", None, MediaTypes::Docker),
            ("type=docker,dest=f,compression=zstd", Some(Compression::Zstd), MediaTypes::Oci),
            ("type=docker,dest=f,oci-mediatypes=true", None, MediaTypes::Oci),
            ("type=docker,dest=f,oci-mediatypes=1", None, MediaTypes::Oci),
            (
                "type=image,compression=zstd,oci-mediatypes=True",
                Some(Compression::Zstd),
                MediaTypes::Oci,
            ),
            ("type=registry,oci-mediatypes=F", None, MediaTypes::Docker),
        ];
        for (spec, compression, media_types) in cases {
            let output = parse(spec);
            let got = output.image().unwrap();
            assert_eq!((got.compression, got.media_types), (*compression, *media_types), "{spec}");
        }
    }

    #[test]
    fn several_names_in_quotes_as_buildx_allows() {
        let output = parse(r#"type=image,"name=a:1,docker.io/b/c:2",push=false"#);
        assert_eq!(output.image().unwrap().names, ["a:1", "docker.io/b/c:2"]);
        let output = parse(r#""type=oci","dest=a ""quoted"" file",name=x"#);
        assert_eq!(
            output,
            Output::Oci {
                dest: file(r#"a "quoted" file"#),
                image: image(&["x"], None, MediaTypes::Oci)
            }
        );
        // A quoted field at the very end.
        let output = parse(r#"type=docker,dest=f,"name=a,b""#);
        assert_eq!(output.image().unwrap().names, ["a", "b"]);
    }

    #[test]
    fn keys_are_trimmed_and_case_insensitive_values_are_not() {
        assert_eq!(parse(" TYPE=tar, Dest = x"), Output::Tar { dest: file(" x") });
        assert_eq!(
            Output::parse("type=OCI,dest=f").unwrap_err().to_string(),
            "unknown output type \"OCI\" (expected oci, docker, local, tar, image or registry)"
        );
    }

    #[test]
    fn produces_image_and_kind() {
        for (spec, kind, produces) in [
            ("type=oci,dest=f", "oci", true),
            ("type=docker,dest=f", "docker", true),
            ("type=local,dest=d", "local", false),
            ("type=tar,dest=f", "tar", false),
            ("type=image", "image", true),
            ("type=registry", "registry", true),
        ] {
            let output = parse(spec);
            assert_eq!((output.kind(), output.produces_image()), (kind, produces), "{spec}");
            assert_eq!(output.image().is_some(), produces);
        }
    }

    #[test]
    fn every_error() {
        let cases: &[(&str, &str)] = &[
            ("", "empty output specification"),
            (
                r#"type=oci,"dest=f"#,
                r#"invalid output specification "type=oci,\"dest=f": a quoted field is not closed"#,
            ),
            (
                r#"type=oci,"dest"=f"#,
                r#"invalid output specification "type=oci,\"dest\"=f": extraneous or missing " in quoted field"#,
            ),
            (
                r#"type=oci,de"st=f"#,
                r#"invalid output specification "type=oci,de\"st=f": bare " in non-quoted field"#,
            ),
            ("type=oci,dest", "invalid output field \"dest\": expected key=value"),
            ("type=tar,", "invalid output field \"\": expected key=value"),
            (
                "dest=f,name=x",
                "output specification \"dest=f,name=x\" has no type= (expected oci, docker, local, tar, image or registry)",
            ),
            (
                "type=zip,dest=f",
                "unknown output type \"zip\" (expected oci, docker, local, tar, image or registry)",
            ),
            (
                "type=",
                "unknown output type \"\" (expected oci, docker, local, tar, image or registry)",
            ),
            (
                "type=oci,dest=f,push=true",
                "unknown key \"push\" for output type=oci (valid keys: dest, name, compression, oci-mediatypes)",
            ),
            (
                "type=docker,dest=f,tar=false",
                "unknown key \"tar\" for output type=docker (valid keys: dest, name, compression, oci-mediatypes)",
            ),
            (
                "type=local,dest=d,compression=gzip",
                "unknown key \"compression\" for output type=local (valid keys: dest)",
            ),
            (
                "type=tar,dest=f,name=x",
                "unknown key \"name\" for output type=tar (valid keys: dest)",
            ),
            (
                "type=image,dest=f",
                "unknown key \"dest\" for output type=image (valid keys: name, push, compression, oci-mediatypes)",
            ),
            (
                "type=registry,push=true",
                "unknown key \"push\" for output type=registry (valid keys: name, compression, oci-mediatypes)",
            ),
            (
                "type=image,compression-level=3",
                "unknown key \"compression-level\" for output type=image (valid keys: name, push, compression, oci-mediatypes)",
            ),
            (
                "type=oci,dest=a,DEST=b",
                "key \"dest\" is given more than once in the output specification",
            ),
            (
                "type=oci,type=docker,dest=a",
                "key \"type\" is given more than once in the output specification",
            ),
            (
                "type=image,compression=brotli",
                "invalid value \"brotli\" for compression: expected gzip, zstd or uncompressed",
            ),
            (
                "type=image,compression=estargz",
                "invalid value \"estargz\" for compression: expected gzip, zstd or uncompressed",
            ),
            (
                "type=image,oci-mediatypes=yes",
                "invalid value \"yes\" for oci-mediatypes: expected true or false",
            ),
            ("type=image,push=", "invalid value \"\" for push: expected true or false"),
            ("type=oci", "output type=oci needs dest=PATH"),
            ("type=docker,dest=", "output type=docker needs dest=PATH"),
            ("type=tar,name=x", "unknown key \"name\" for output type=tar (valid keys: dest)"),
            ("type=tar", "output type=tar needs dest=PATH"),
            ("type=local", "output type=local needs dest=PATH"),
            (
                "type=local,dest=-",
                "output type=local writes a directory and cannot write to stdout (dest=-); use type=tar",
            ),
            ("type=image,name=", "empty image name in name=\"\""),
            (r#"type=image,"name=a,,b""#, "empty image name in name=\"a,,b\""),
            ("type=image,name=a,", "invalid output field \"\": expected key=value"),
            (
                "type=oci,dest=f,compression=zstd,oci-mediatypes=false",
                "compression=zstd conflicts with oci-mediatypes=false",
            ),
        ];
        for (spec, message) in cases {
            let err = Output::parse(spec).expect_err(spec);
            assert_eq!(err.to_string(), *message, "{spec}");
        }
    }
}
