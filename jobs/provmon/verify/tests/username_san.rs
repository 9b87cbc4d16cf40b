//! Keyless certificates that name their signer in Fulcio's username SAN (an
//! otherName, `1.3.6.1.4.1.57264.1.7`, as private Fulcio instances issue)
//! are read and matched on that name, as the Go Sigstore client does;
//! before, the identity read was "none" and such bundles never verified.
//!
//! Everything is made here from fixed seeds, so the bytes are the same on
//! every run: a private Fulcio CA and a leaf with the username SAN and the
//! issuer extension (rcgen, signing through the fixtures' RFC 6979 keys),
//! an embedded SCT from a test CT log, the signature logged in the fixture
//! Rekor log, and a trusted root naming all three.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use patrol_provmon_verify::bundle::{check_bundle, Signer, Subject, TrustRoot};
use patrol_provmon_verify::fixtures::{
    sigstore_bundle, trusted_root, Artifact, FakeLog, SigningKey,
};
use patrol_provmon_verify::san::{subject_alt_names, Name};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, RemoteKeyPair, SanType, SerialNumber,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

const ISSUER: &str = "https://oidc.private.example";
const USERNAME: &str = "alice@private.example";
const USERNAME_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 7];
const ISSUER_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 57264, 1, 8];
const SCT_LIST_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2];
/// 2026-01-01T00:00:00Z: the leaf is valid for the day after.
const DAY_START: i64 = 1_767_225_600;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fixtures key (deterministic ECDSA) that rcgen signs with.
struct FixedKey {
    key: SigningKey,
    point: Vec<u8>,
}

impl RemoteKeyPair for FixedKey {
    fn public_key(&self) -> &[u8] {
        &self.point
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.key.sign(msg))
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn rcgen_key(key: &SigningKey) -> KeyPair {
    let spki = key.public_key().spki_der().to_vec();
    // A P-256 SPKI ends with the 65-byte uncompressed point.
    assert_eq!(spki.len(), 91);
    let point = spki[spki.len() - 65..].to_vec();
    KeyPair::from_remote(Box::new(FixedKey {
        key: key.clone(),
        point,
    }))
    .unwrap()
}

fn der_length(len: usize) -> Vec<u8> {
    match len {
        0..=127 => vec![len as u8],
        128..=255 => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_length(content.len()));
    out.extend_from_slice(content);
    out
}

/// The embedded SCT list extension's value: one RFC 6962 SCT by `ct` over
/// the precertificate `tbs` issued under `issuer_spki`.
fn sct_list(ct: &SigningKey, issuer_spki: &[u8], tbs: &[u8], timestamp_ms: u64) -> Vec<u8> {
    let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
    signed.extend(timestamp_ms.to_be_bytes());
    signed.extend(1u16.to_be_bytes()); // precert_entry
    signed.extend(Sha256::digest(issuer_spki));
    signed.extend(&u32::try_from(tbs.len()).unwrap().to_be_bytes()[1..]);
    signed.extend(tbs);
    signed.extend(0u16.to_be_bytes()); // no extensions
    let signature = ct.sign(&signed);
    let mut sct = vec![0u8];
    sct.extend(Sha256::digest(ct.public_key().spki_der()));
    sct.extend(timestamp_ms.to_be_bytes());
    sct.extend(0u16.to_be_bytes());
    sct.extend([4u8, 3u8]); // sha256, ecdsa
    sct.extend(u16::try_from(signature.len()).unwrap().to_be_bytes());
    sct.extend(signature);
    let mut list = u16::try_from(sct.len() + 2).unwrap().to_be_bytes().to_vec();
    list.extend(u16::try_from(sct.len()).unwrap().to_be_bytes());
    list.extend(sct);
    der(0x04, &list)
}

struct Instance {
    ca_der: Vec<u8>,
    leaf_der: Vec<u8>,
    leaf: SigningKey,
    ct: SigningKey,
}

/// A private Fulcio instance's CA, CT log and a leaf for `username`.
fn private_instance(username: &str) -> Instance {
    let ca_signing = SigningKey::p256_from_seed(b"username-san/ca");
    let ca_key = rcgen_key(&ca_signing);
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "private fulcio test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = rcgen::date_time_ymd(2020, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2030, 1, 1);
    ca.serial_number = Some(SerialNumber::from(1u64));
    let ca_cert = ca.self_signed(&ca_key).unwrap();

    let leaf_signing = SigningKey::p256_from_seed(b"username-san/leaf");
    let leaf_key = rcgen_key(&leaf_signing);
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::OtherName((USERNAME_OID.to_vec(), username.into()))];
    leaf.custom_extensions = vec![CustomExtension::from_oid_content(
        ISSUER_OID,
        der(0x0c, ISSUER.as_bytes()),
    )];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    leaf.not_before = rcgen::date_time_ymd(2026, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2026, 1, 2);
    leaf.serial_number = Some(SerialNumber::from(2u64));

    // The precertificate is the leaf without its SCT list; the CT log signs
    // its TBS, re-encoded as verifiers re-encode it.
    let precert = leaf
        .clone()
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .unwrap();
    let tbs = x509_cert::Certificate::from_der(precert.der())
        .unwrap()
        .tbs_certificate
        .to_der()
        .unwrap();
    let ct = SigningKey::p256_from_seed(b"username-san/ct");
    let sct_ms = u64::try_from(DAY_START + 60).unwrap() * 1000;
    let list = sct_list(&ct, ca_signing.public_key().spki_der(), &tbs, sct_ms);
    leaf.custom_extensions
        .push(CustomExtension::from_oid_content(SCT_LIST_OID, list));
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    Instance {
        ca_der: ca_cert.der().to_vec(),
        leaf_der: leaf_cert.der().to_vec(),
        leaf: leaf_signing,
        ct,
    }
}

fn pem_certificate(der: &[u8]) -> String {
    let text = b64(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// A keyless bundle for `contents`, signed by the instance's leaf and
/// logged in a fixture Rekor log, and the trusted root for all of it.
fn keyless_bundle(instance: &Instance, contents: &[u8]) -> (Vec<u8>, TrustRoot) {
    let artifact = Artifact::signed(&instance.leaf, "artifact", contents);
    let mut log = FakeLog::new(b"username-san/rekor");
    let body = artifact.hashedrekord_body(&pem_certificate(&instance.leaf_der));
    let index = log.append(body, DAY_START + 300).unwrap();
    let mut bundle = sigstore_bundle(
        &log,
        index,
        &artifact.sha256,
        &artifact.signature,
        &instance.leaf.public_key(),
    )
    .unwrap();
    let material = bundle["verificationMaterial"].as_object_mut().unwrap();
    material.remove("publicKey");
    material.insert(
        "certificate".into(),
        json!({"rawBytes": b64(&instance.leaf_der)}),
    );

    let mut root: Value = trusted_root(&log, "https://rekor.private.example");
    let ct_spki = instance.ct.public_key().spki_der().to_vec();
    root["certificateAuthorities"] = json!([{
        "subject": {"organization": "patrol tests", "commonName": "private fulcio test CA"},
        "uri": "https://fulcio.private.example",
        "certChain": {"certificates": [{"rawBytes": b64(&instance.ca_der)}]},
        "validFor": {"start": "2020-01-01T00:00:00Z"},
    }]);
    root["ctlogs"] = json!([{
        "baseUrl": "https://ct.private.example",
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": b64(&ct_spki),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        },
        "logId": {"keyId": b64(&Sha256::digest(&ct_spki))},
    }]);
    let root = TrustRoot::from_json(&root.to_string(), "private instance root").unwrap();
    (serde_json::to_vec(&bundle).unwrap(), root)
}

fn signer(identity: &str) -> Signer {
    Signer::Identity {
        identity: identity.into(),
        issuer: ISSUER.into(),
    }
}

#[test]
fn a_fulcio_username_san_is_read_as_an_identity() {
    let instance = private_instance(USERNAME);
    assert_eq!(
        subject_alt_names(&instance.leaf_der).unwrap(),
        vec![Name::Username(USERNAME.into())]
    );
    // Fixed seeds and RFC 6979 signatures: the same certificate every run.
    assert_eq!(private_instance(USERNAME).leaf_der, instance.leaf_der);
}

#[test]
fn a_keyless_bundle_verifies_for_the_identity_in_its_username_san() {
    let instance = private_instance(USERNAME);
    let contents = b"built by a private instance's user";
    let (bundle, root) = keyless_bundle(&instance, contents);
    let facts = check_bundle(&bundle, Subject::Bytes(contents), &signer(USERNAME), &root)
        .unwrap_or_else(|reason| panic!("does not verify: {reason}"));
    assert_eq!(facts.identity.as_deref(), Some(USERNAME));
    assert_eq!(facts.issuer.as_deref(), Some(ISSUER));
    let digest: [u8; 32] = Sha256::digest(contents).into();
    assert!(check_bundle(&bundle, Subject::Sha256(digest), &signer(USERNAME), &root).is_ok());
}

#[test]
fn a_keyless_bundle_for_another_username_is_refused_naming_both() {
    let instance = private_instance(USERNAME);
    let contents = b"built by a private instance's user";
    let (bundle, root) = keyless_bundle(&instance, contents);
    let reason = check_bundle(
        &bundle,
        Subject::Bytes(contents),
        &signer("mallory@private.example"),
        &root,
    )
    .unwrap_err();
    assert!(
        reason.contains(
            "identity mismatch: expected mallory@private.example, got alice@private.example"
        ),
        "{reason}"
    );
    // The issuer still has to match.
    let wrong_issuer = Signer::Identity {
        identity: USERNAME.into(),
        issuer: "https://accounts.example.com".into(),
    };
    let reason = check_bundle(&bundle, Subject::Bytes(contents), &wrong_issuer, &root).unwrap_err();
    assert!(reason.contains("issuer"), "{reason}");
}
