//! MQTT over TLS against Mosquitto: a private CA from `mqtt.ca_file` and a client
//! certificate for mutual TLS. Certificates are generated for each run.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::support::mosquitto::Mosquitto;
use crate::support::publisher::Publisher;
use crate::support::*;

pub struct Pki {
    pub ca: String,
    pub server: (String, String),
    pub client: (String, String),
}

/// A private CA with a server certificate for 127.0.0.1 and a client certificate.
pub fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.distinguished_name.push(DnType::CommonName, "bullhorn test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, "bullhorn test");
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca_cert.pem(),
        server: leaf(vec!["127.0.0.1".to_owned(), "localhost".to_owned()], ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(vec!["bullhorn".to_owned()], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write pem");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_a_private_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki();
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let server_cert = write(dir.path(), "server.pem", &pki.server.0);
    let server_key = write(dir.path(), "server.key", &pki.server.1);
    let client_cert = write(dir.path(), "client.pem", &pki.client.0);
    let client_key = write(dir.path(), "client.key", &pki.client.1);
    let tls_port = free_port();
    // The plain listener (from `start_with`) is for the test's publisher; bullhorn uses TLS.
    let broker = Mosquitto::start_with(
        &dir.path().join("mosquitto"),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {server_cert}\nkeyfile {server_key}\nrequire_certificate true\n"
        ),
    );
    let posts = dir.path().join("posts.jsonl");
    let channels = format!("[channels.log]\nkind = \"file\"\npath = \"{}\"\n", posts.display());
    let config = write_config(
        dir.path(),
        &format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{ca}\"\ncert_file = \"{client_cert}\"\nkey_file = \"{client_key}\""
        ),
        &channels,
    );
    let app = start_app(&config).await;
    Publisher::new(broker.port, "tls-pub")
        .publish("cad/a/events", event("TLS-1", 1, "road_closure", "over TLS"), Duration::from_secs(10))
        .await;
    let text =
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&posts).ok().filter(|s| !s.is_empty())).await;
    assert!(text.is_some_and(|t| t.contains("over TLS")));
    app.stop().await;

    // Without the client certificate the broker refuses the connection: never ready.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let config =
        write_config(dir2.path(), &format!("url = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{ca}\""), &channels);
    let config = bullhorn::config::load(&config).expect("config");
    let app = bullhorn::app::start(config).await.expect("start");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!app.health().readiness().broker_connected, "mutual TLS refused without a client certificate");
    app.stop().await;
}
