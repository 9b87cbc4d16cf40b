//! Certificate authorities made on the spot for TLS tests: nothing on disk
//! to expire or leak, and a second CA is one call away when a test needs a
//! certificate the client must not trust.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::ServerTls;

/// A self-signed CA that can issue server certificates.
pub struct TestCa {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let certificate = params.self_signed(&key).expect("CA certificate");
        Self { certificate, key }
    }

    /// The CA's certificate (PEM), what a client puts in `sslrootcert`.
    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// A server certificate and key this CA signs, naming exactly `names`
    /// (DNS names or IP addresses) in its subject alternative names.
    pub fn issue_server(&self, names: &[&str]) -> ServerTls {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("server", String::as_str),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("server certificate");
        ServerTls {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
