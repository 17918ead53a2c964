//! The embedded MQTT broker (rumqttd, cargo feature `embedded-broker`), so a fresh install
//! runs with no external service.
//!
//! It keeps nothing on disk and acknowledges publishers itself: a message it accepted is
//! lost if the process dies before bullhorn commits it. It is for trials, drills and
//! single-box setups; production points `mqtt.url` at a persistent broker (see README).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::{BrokerConfig, MqttConfig, Protocol};

/// The running broker. It has no stop API; it ends with the process.
#[derive(Debug)]
pub struct EmbeddedBroker {
    pub listen: SocketAddr,
}

/// Start the broker on `broker.listen`, speaking the protocol the client is configured
/// for. A port that is already taken is an error, never a silent connection to whatever
/// holds it.
pub fn start(broker: &BrokerConfig, mqtt: &MqttConfig) -> Result<EmbeddedBroker, String> {
    let listen = broker.listen;
    match TcpListener::bind(listen) {
        Ok(probe) => drop(probe),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(format!(
                "cannot start the embedded broker: {listen} is already in use (another MQTT broker such as a system Mosquitto may hold it); set broker.listen to a free address (e.g. BULLHORN__BROKER__LISTEN=127.0.0.1:1884), or set broker.enabled = false and mqtt.url to use that broker"
            ));
        }
        Err(e) => return Err(format!("cannot start the embedded broker on {listen}: {e}")),
    }
    let server = ServerSettings {
        name: "bullhorn-embedded".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            // Room for oversize payloads to reach bullhorn, which rejects and records them.
            max_payload_size: mqtt.max_packet_bytes,
            max_inflight_count: usize::from(mqtt.receive_maximum).clamp(20, 1000),
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let servers = HashMap::from([("1".to_owned(), server)]);
    let (v4, v5) = match mqtt.protocol {
        Protocol::V311 => (Some(servers), None),
        Protocol::V5 => (None, Some(servers)),
    };
    let config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4,
        v5,
        ..rumqttd::Config::default()
    };
    std::thread::Builder::new()
        .name("bullhorn-broker".to_owned())
        .spawn(move || {
            let mut b = rumqttd::Broker::new(config);
            if let Err(e) = b.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| format!("cannot start the embedded broker thread: {e}"))?;
    for _ in 0..100 {
        if TcpStream::connect_timeout(&listen, Duration::from_millis(100)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker listening (in memory only: use a persistent broker in production)");
            return Ok(EmbeddedBroker { listen });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the embedded broker did not start listening on {listen}"))
}
