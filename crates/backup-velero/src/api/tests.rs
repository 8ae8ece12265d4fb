use serde_json::json;

use super::*;

#[test]
fn unknown_fields_survive_a_serde_round_trip() {
    let written_by_newer_velero = json!({
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "metadata": {"name": "b", "namespace": "velero"},
        "spec": {
            "ttl": "720h0m0s",
            "includedNamespaces": ["app"],
            "futureSpecField": {"nested": [1, 2]},
            "hooks": {"resources": [{"name": "h", "unknownHookField": true}]}
        },
        "status": {
            "phase": "SomeFuturePhase",
            "progress": {"totalItems": 3, "itemsBackedUp": 1, "itemsSkipped": 2},
            "futureStatusField": "x"
        }
    });
    let b: Backup = serde_json::from_value(written_by_newer_velero.clone()).unwrap();
    assert_eq!(b.spec.ttl.as_deref(), Some("720h0m0s"));
    let status = b.status.as_ref().unwrap();
    assert_eq!(
        status.phase,
        Some(BackupPhase::Other("SomeFuturePhase".into()))
    );
    assert_eq!(b.spec.extra["futureSpecField"], json!({"nested": [1, 2]}));
    assert_eq!(serde_json::to_value(&b).unwrap(), written_by_newer_velero);
}

#[test]
fn phases_parse_known_and_keep_unknown() {
    for p in BackupPhase::KNOWN {
        let parsed: BackupPhase = serde_json::from_value(json!(p)).unwrap();
        assert!(!matches!(parsed, BackupPhase::Other(_)), "{p}");
        assert_eq!(parsed.as_str(), *p);
    }
    assert_eq!(BackupPhase::KNOWN.len(), 13);
    assert_eq!(RestorePhase::KNOWN.len(), 10);
    assert!(BackupPhase::KNOWN.contains(&"WaitingForPluginOperationsPartiallyFailed"));
    assert_eq!(
        serde_json::to_value(RestorePhase::from("Queued")).unwrap(),
        json!("Queued")
    );
    assert!(DownloadTargetKind::KNOWN.contains(&"BackupResults"));
}

#[test]
fn special_field_spellings() {
    let r = RestoreSpec {
        restore_pvs: Some(true),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"restorePVs": true})
    );
    let s = DownloadRequestStatus {
        download_url: Some("https://x".into()),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        json!({"downloadURL": "https://x"})
    );
    let loc = ObjectStorageLocation {
        bucket: "b".into(),
        ca_cert: Some(k8s_openapi::ByteString(b"PEM".to_vec())),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&loc).unwrap(),
        json!({"bucket": "b", "caCert": "UEVN"})
    );
}

#[test]
fn crds_preserve_unknown_fields_and_have_no_status_subresource() {
    let crds = crds();
    assert_eq!(crds.len(), 7);
    for crd in &crds {
        assert_eq!(crd.spec.group, GROUP);
        let plural = &crd.spec.names.plural;
        assert!(REQUIRED_RESOURCES.contains(&plural.as_str()), "{plural}");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, VERSION);
        let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
        let props = &schema["openAPIV3Schema"]["properties"];
        for part in ["spec", "status"] {
            assert_eq!(
                props[part]["x-kubernetes-preserve-unknown-fields"],
                json!(true),
                "{plural}.{part}"
            );
            assert!(
                props[part].get("additionalProperties").is_none(),
                "{plural}.{part} must be structural"
            );
        }
        // Velero writes status through the main resource: no status subresource.
        assert!(v.subresources.is_none(), "{plural}");
    }
    let backup = serde_json::to_value(&crds[0]).unwrap();
    let hooks = &backup["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["hooks"];
    assert_eq!(hooks["x-kubernetes-preserve-unknown-fields"], json!(true));
}
