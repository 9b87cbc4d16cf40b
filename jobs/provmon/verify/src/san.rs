//! The subject alternative names of a signing certificate, including the
//! otherName form Fulcio uses for username identities
//! (`1.3.6.1.4.1.57264.1.7`, a UTF8String; private instances issue them).
//! sigstore-verify reads only email and URI SANs, so a keyless bundle whose
//! certificate names its signer this way is matched from here.

use der::asn1::Utf8StringRef;
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// Fulcio's username SAN (otherName type id).
pub const FULCIO_USERNAME_OID: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");

/// One identity a certificate's SAN extension asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Email(String),
    Uri(String),
    /// Fulcio's username otherName.
    Username(String),
}

/// Every email, URI and Fulcio username SAN of the DER certificate `der`,
/// in order. Other kinds of names are skipped; a certificate that does not
/// parse, or a username SAN that is not a UTF8String, is an error.
pub fn subject_alt_names(der: &[u8]) -> Result<Vec<Name>, String> {
    let cert = Certificate::from_der(der)
        .map_err(|e| format!("the signing certificate does not parse: {e}"))?;
    let extension: Option<(bool, SubjectAltName)> = cert
        .tbs_certificate
        .get()
        .map_err(|e| format!("the signing certificate's SAN extension does not parse: {e}"))?;
    let Some((_critical, names)) = extension else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for name in names.0 {
        match name {
            GeneralName::Rfc822Name(email) => found.push(Name::Email(email.to_string())),
            GeneralName::UniformResourceIdentifier(uri) => found.push(Name::Uri(uri.to_string())),
            GeneralName::OtherName(other) if other.type_id == FULCIO_USERNAME_OID => {
                let bytes = other
                    .value
                    .to_der()
                    .map_err(|e| format!("the Fulcio username SAN: {e}"))?;
                let text = Utf8StringRef::from_der(&bytes)
                    .map_err(|e| format!("the Fulcio username SAN is not a UTF8String: {e}"))?;
                found.push(Name::Username(text.as_str().to_string()));
            }
            _ => {}
        }
    }
    Ok(found)
}
