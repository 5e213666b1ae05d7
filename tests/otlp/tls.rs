//! OTLP/gRPC over TLS to a collector whose certificate is signed by a
//! private CA (the usual in-house setup), trusted via --otlp-ca-cert.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls::pki_types::CertificateDer;

/// A CA and a server certificate for `localhost`, the CA written to a
/// temporary PEM file that is removed on drop.
pub struct Pki {
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub server_cert_der: CertificateDer<'static>,
    pub server_key_pkcs8: Vec<u8>,
    pub ca_path: PathBuf,
}

impl Pki {
    pub fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        static N: AtomicU32 = AtomicU32::new(0);
        let ca_path = std::env::temp_dir().join(format!(
            "sipscope-otlp-ca-{}-{}.pem",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        Self {
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            server_cert_der: server_cert.der().clone(),
            server_key_pkcs8: server_key.serialize_der(),
            ca_path,
        }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_path);
    }
}
