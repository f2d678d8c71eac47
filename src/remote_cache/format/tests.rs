use super::*;
use crate::image::manifest::{OCI_CONFIG, OCI_LAYER_GZIP};
use serde_json::{Value, json};

fn layer(n: u8, created: Option<&str>) -> LayerRef {
    LayerRef {
        diff_id: Digest::of(&[n, 0]),
        blob: Digest::of(&[n]),
        media_type: OCI_LAYER_GZIP.into(),
        size: u64::from(n) * 10,
        created: created.map(str::to_string),
    }
}

fn entry(key: u8, layers: Vec<LayerRef>, description: &str) -> CacheEntry {
    CacheEntry {
        key: CacheKey::from(Digest::of(&[key, key])),
        layers,
        description: description.into(),
        created: 1_700_000_000 + u64::from(key),
    }
}

/// A base layer shared by two records, each with a layer of its own.
fn sample() -> Vec<CacheEntry> {
    vec![
        entry(1, vec![layer(1, None), layer(2, Some("2024-01-02T03:04:05Z"))], "RUN a"),
        entry(2, vec![layer(1, None), layer(3, Some("2024-01-02T03:04:06.5Z"))], "COPY b /b"),
    ]
}

fn copy_source() -> CopySourceDigest {
    CopySourceDigest {
        key: CacheKey::from(Digest::of(b"copy")),
        digest: Digest::of(b"files"),
        sources: vec![("/out".into(), Digest::of(b"out"))],
    }
}

fn decode_bytes(artifact: &Artifact) -> Result<Decoded, FormatError> {
    decode(&parse_manifest(&artifact.manifest)?, &artifact.config)
}

#[test]
fn encoding_round_trips_and_does_not_depend_on_order() {
    let entries = sample();
    let artifact = encode(&entries, &[copy_source()]).unwrap();
    let mut reversed = entries.clone();
    reversed.reverse();
    assert_eq!(encode(&reversed, &[copy_source()]).unwrap(), artifact, "same bytes");
    assert_eq!(artifact.manifest_digest, Digest::of(&artifact.manifest));
    assert_eq!(artifact.config_digest, Digest::of(&artifact.config));
    let blobs: Vec<Digest> = artifact.layers.iter().map(|l| l.digest).collect();
    assert_eq!(blobs.len(), 3, "the shared base layer is listed once");

    let mut sorted = entries.clone();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let decoded = decode_bytes(&artifact).unwrap();
    assert_eq!(decoded.entries, sorted);
    assert_eq!(decoded.copy_sources, vec![copy_source()]);
}

#[test]
fn the_documents_look_as_documented() {
    let artifact = encode(&sample()[..1], &[]).unwrap();
    let manifest: Value = serde_json::from_slice(&artifact.manifest).unwrap();
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(manifest["artifactType"], ARTIFACT_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
    let config: Value = serde_json::from_slice(&artifact.config).unwrap();
    let entry = &sample()[0];
    assert_eq!(
        config,
        json!({
            "format": 1,
            "keyVersion": KEY_VERSION,
            "layers": [
                {"blob": Digest::of(&[1]).to_string(), "diffId": Digest::of(&[1, 0]).to_string()},
                {"blob": Digest::of(&[2]).to_string(), "diffId": Digest::of(&[2, 0]).to_string()},
            ],
            "records": [{
                "key": entry.key.to_string(),
                "description": "RUN a",
                "created": 1_700_000_001,
                "layers": [{"layer": 0}, {"layer": 1, "created": "2024-01-02T03:04:05Z"}],
            }],
        })
    );
}

#[test]
fn one_blob_with_two_diff_ids_is_refused() {
    let mut bad = layer(1, None);
    bad.diff_id = Digest::of(b"other");
    let entries = vec![entry(1, vec![layer(1, None)], "a"), entry(2, vec![bad], "b")];
    assert!(matches!(encode(&entries, &[]).unwrap_err(), FormatError::ConflictingDiffIds { .. }));
}

/// The sample's documents with `edit` applied to the config JSON and the manifest JSON.
fn edited(edit: impl FnOnce(&mut Value, &mut Value)) -> Result<Decoded, FormatError> {
    let artifact = encode(&sample(), &[]).unwrap();
    let mut manifest: Value = serde_json::from_slice(&artifact.manifest).unwrap();
    let mut config: Value = serde_json::from_slice(&artifact.config).unwrap();
    edit(&mut manifest, &mut config);
    let manifest = parse_manifest(&serde_json::to_vec(&manifest).unwrap())?;
    decode(&manifest, &serde_json::to_vec(&config).unwrap())
}

#[test]
fn decoding_refuses_what_does_not_hold_together() {
    let error = |edit: fn(&mut Value, &mut Value)| edited(edit).unwrap_err().to_string();
    assert_eq!(
        error(|_, c| c["format"] = 2.into()),
        "cache format 2 is not one this kiln reads (it reads format 1)"
    );
    assert_eq!(
        error(|_, c| c["keyVersion"] = "kiln-cache-key-v0".into()),
        format!(
            "the cache keys were computed as \"kiln-cache-key-v0\" and this kiln computes \"{KEY_VERSION}\" (the cache was written by another kiln version)"
        )
    );
    assert_eq!(error(|_, c| c["records"][0]["layers"][0]["layer"] = 7.into()), {
        let key = sample().into_iter().map(|e| e.key).min().unwrap();
        format!("invalid cache config: record {key} names layer 7, out of range")
    });
    assert_eq!(
        error(|m, _| {
            m["layers"].as_array_mut().unwrap().pop();
        }),
        "invalid cache config: it describes 3 layers and the manifest lists 2"
    );
    assert!(
        error(|m, _| m["layers"][0]["digest"] = Digest::of(b"x").to_string().into())
            .starts_with("invalid cache config: layer 0 is sha256:"),
    );
    assert_eq!(
        error(|_, c| c["records"][0]["key"] = "../x".into()),
        "invalid cache config: invalid cache key \"../x\": expected 64 lowercase hex characters"
    );
    assert!(
        error(|_, c| {
            let first = c["records"][0].clone();
            c["records"].as_array_mut().unwrap().push(first);
        })
        .ends_with("appears twice")
    );
    assert!(
        error(|_, c| c["records"][0]["layers"][1]["created"] = "yesterday".into())
            .ends_with("invalid time \"yesterday\"")
    );
    assert_eq!(
        error(|m, _| m["layers"][0]["mediaType"] = "application/x-secret".into()),
        format!(
            "invalid cache manifest: layer {}: unsupported layer media type \"application/x-secret\"",
            Digest::of(&[1])
        )
    );
    assert_eq!(error(|_, c| *c = json!({"records": []})), "invalid cache config: it has no format");
}

#[test]
fn manifests_of_other_things_are_named() {
    let error = |value: Value| parse_manifest(&serde_json::to_vec(&value).unwrap()).unwrap_err();
    let config = |media_type: &str| json!({"mediaType": media_type, "digest": Digest::of(b"c").to_string(), "size": 1});
    let image = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config(OCI_CONFIG), "layers": []});
    assert_eq!(
        error(image).to_string(),
        format!(
            "not a kiln cache: its config has media type \"{OCI_CONFIG}\" (expected {CONFIG_MEDIA_TYPE})"
        )
    );
    let buildkit_index = json!({"schemaVersion": 2, "manifests": [config(BUILDKIT_CONFIG)]});
    assert_eq!(error(buildkit_index).to_string(), "it is a BuildKit cache, which kiln cannot use");
    let buildkit = json!({"schemaVersion": 2, "config": config(BUILDKIT_CONFIG), "layers": []});
    assert!(matches!(error(buildkit), FormatError::BuildKit));
    assert!(matches!(
        error(json!({"schemaVersion": 2, "manifests": []})),
        FormatError::Manifest(_)
    ));
    assert!(
        parse_manifest(b"not json")
            .unwrap_err()
            .to_string()
            .starts_with("invalid cache manifest: ")
    );
}

#[test]
fn copy_source_keys_follow_the_copy_and_the_layers() {
    use kiln_frontend::graph::{CopyOp, CopySourceRef, StepId};
    let op = CopyOp {
        dest_parent: StepId(3),
        source: CopySourceRef::Step(StepId(1)),
        sources: vec!["/out".into()],
        inline_sources: vec![],
        dest: "/app/".into(),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: vec![],
        add: None,
    };
    let layers = [Digest::of(b"a"), Digest::of(b"b")];
    let key = copy_source_key(&op, &layers);
    let mut moved = op.clone();
    moved.dest_parent = StepId(9);
    moved.source = CopySourceRef::Step(StepId(5));
    assert_eq!(copy_source_key(&moved, &layers), key, "step ids are not what the copy reads");
    let mut other = op.clone();
    other.exclude = vec!["*.log".into()];
    assert_ne!(copy_source_key(&other, &layers), key);
    assert_ne!(copy_source_key(&op, &layers[..1]), key);
}
