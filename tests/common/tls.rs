//! A test certificate authority (rcgen) and HTTPS clients that trust it.

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::net::SocketAddr;
use std::time::Duration;

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate's chain (PEM) and its private key (PEM).
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for these DNS names (and 127.0.0.1), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// An HTTPS client trusting only this CA; `names` resolve to `addr` (SNI is the name).
    /// `http1_only` keeps ALPN to HTTP/1.1; else h2 is offered first.
    pub fn client(&self, names: &[&str], addr: SocketAddr, http1_only: bool) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.pem().as_bytes()).expect("root");
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .timeout(Duration::from_secs(30));
        for n in names {
            b = b.resolve(n, addr);
        }
        if http1_only {
            b = b.http1_only();
        }
        b.build().expect("https client")
    }
}
