//! The MQTT connection, for MQTT 5 and 3.1.1 behind one interface.
//!
//! Each connection attempt is a fresh rumqttc client + event loop pair (a *generation*).
//! When a connection fails the pair is dropped with everything still queued in it, so an
//! ack meant for the old connection can never reach a new one, where the broker may have
//! given that packet id to a different message. The session itself lives on in the
//! broker (`clean_start = false` with a session expiry; `clean_session = false` on
//! 3.1.1): it redelivers every message not yet acknowledged.
//!
//! The event loop is polled in its own task and never as a branch of the pipeline's
//! `select!` (rumqttc's `poll` is not documented as cancel-safe). rumqttc does not wait
//! between reconnects, so this task does: capped exponential backoff with jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as p5;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{MqttConfig, Protocol};

/// A connected client, for acks.
#[derive(Debug, Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// What the broker needs to see to acknowledge one message.
#[derive(Debug, Clone)]
pub enum AckHandle {
    V4(rumqttc::Publish),
    V5(p5::Publish),
}

/// One PUBLISH as received.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// MQTT 5 user properties (empty on 3.1.1).
    pub user_properties: Vec<(String, String)>,
    pub handle: AckHandle,
}

#[derive(Debug)]
pub enum ConnEvent {
    /// CONNACK: acks may flow on this generation (a resumed session may deliver queued
    /// messages before the SUBACK).
    Connected {
        generation: u64,
        client: Client,
        session_present: bool,
    },
    /// Every subscription was granted: the daemon is receiving.
    Subscribed {
        generation: u64,
    },
    Message {
        generation: u64,
        message: Box<Message>,
    },
    Disconnected {
        generation: u64,
        error: String,
    },
}

impl Client {
    /// Send the PUBACK for `handle`. Fails only if this generation's event loop is gone.
    pub async fn ack(&self, handle: &AckHandle) -> Result<(), String> {
        match (self, handle) {
            (Client::V4(c), AckHandle::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), AckHandle::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("ack for a message of the other protocol version".to_owned()),
        }
    }
}

/// A rustls client config with the ring provider: the CA file if given, else the
/// system's roots; a client certificate for mutual TLS if given.
pub fn tls_config(cfg: &MqttConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("mqtt.ca_file {}: {e}", ca.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("mqtt.ca_file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("mqtt.ca_file {}: no certificates in it", ca.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("mqtt.ca_file {}: {e}", ca.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err("no system CA certificates found; set mqtt.ca_file".to_owned());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match &cfg.client_cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("mqtt.cert_file {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("mqtt.key_file {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The largest packet MQTT can encode (remaining length 268,435,455 + fixed header).
const MQTT_MAX_PACKET: usize = 268_435_455 + 5;

/// What the broker granted one subscription.
enum Grant {
    AtLeastOnce,
    AtMostOnce,
    Refused(String),
}

/// Log every subscription not granted at QoS 1 or better; whether all were.
fn all_granted(cfg: &MqttConfig, grants: impl IntoIterator<Item = Grant>) -> bool {
    let mut ok = true;
    for (sub, grant) in cfg.subscriptions.iter().zip(grants) {
        match grant {
            Grant::AtLeastOnce => {}
            Grant::AtMostOnce => {
                ok = false;
                tracing::error!(topic = %sub.topic, "broker granted only QoS 0: messages could be lost, so bullhorn reports not ready; allow QoS 1 for this client at the broker");
            }
            Grant::Refused(code) => {
                ok = false;
                tracing::error!(topic = %sub.topic, %code, "broker refused the subscription; nothing on this topic will be received");
            }
        }
    }
    ok
}

/// TCP_NODELAY: a PUBACK is a few bytes; Nagle's algorithm would hold it back (with the
/// broker's delayed ACK, for tens of milliseconds) and stall the broker's in-flight window.
fn network_options() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// How rumqttc's request channel is sized: acks for a full receive window must fit.
fn request_capacity(cfg: &MqttConfig) -> usize {
    usize::from(cfg.receive_maximum).max(64) + 64
}

/// Run connections until `cancel`: connect, subscribe, forward events, and on failure
/// back off and start the next generation. `reconnect` forces a new generation at once.
pub async fn run_connection(
    cfg: Arc<MqttConfig>,
    tls: Option<Arc<rustls::ClientConfig>>,
    tx: mpsc::UnboundedSender<ConnEvent>,
    reconnect: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut generation = 0u64;
    let mut failures = 0u32;
    loop {
        generation += 1;
        let end = match cfg.protocol {
            Protocol::V5 => drive(V5::connect(&cfg, tls.clone()), &cfg, generation, &tx, &reconnect, &cancel).await,
            Protocol::V311 => drive(V4::connect(&cfg, tls.clone()), &cfg, generation, &tx, &reconnect, &cancel).await,
        };
        let delay = match end {
            End::Cancelled => return,
            End::Forced => Duration::ZERO,
            End::Failed { connected, error } => {
                if connected {
                    failures = 0;
                }
                let delay = cfg.reconnect.equal_jitter(failures, fastrand::f64());
                failures = failures.saturating_add(1);
                tracing::warn!(broker = %cfg.endpoint, %error, retry_in = ?delay, "MQTT connection lost");
                let _ = tx.send(ConnEvent::Disconnected { generation, error });
                delay
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
            () = reconnect.notified() => {}
        }
    }
}

enum End {
    Cancelled,
    Forced,
    Failed { connected: bool, error: String },
}

fn transport(cfg: &MqttConfig, tls: Option<Arc<rustls::ClientConfig>>) -> rumqttc::Transport {
    match tls {
        Some(t) if cfg.endpoint.tls => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(t)),
        _ => rumqttc::Transport::tcp(),
    }
}

/// What the drive loop sees of either protocol version's event loop.
enum Seen {
    ConnAck { session_present: bool },
    Publish(Box<Message>),
    SubAck(Vec<Grant>),
    Other,
}

/// One protocol version's client and event loop, in the drive loop's terms: the loop is
/// written once, and each version only translates its own packets.
trait Session {
    async fn poll(&mut self) -> Result<Seen, String>;
    /// Subscribe to every configured filter at QoS 1.
    fn subscribe(&self, cfg: &MqttConfig) -> Result<(), String>;
    fn client(&self) -> Client;
    fn try_disconnect(&self);
}

/// MQTT 5.
struct V5 {
    client: v5::AsyncClient,
    eventloop: v5::EventLoop,
}

impl V5 {
    fn connect(cfg: &MqttConfig, tls: Option<Arc<rustls::ClientConfig>>) -> V5 {
        let mut o = v5::MqttOptions::new(&cfg.client_id, &cfg.endpoint.host, cfg.endpoint.port);
        o.set_keep_alive(cfg.keep_alive)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(u32::try_from(cfg.session_expiry.as_secs()).unwrap_or(u32::MAX)))
            .set_manual_acks(true)
            .set_receive_maximum(Some(cfg.receive_maximum))
            // The ingest connection publishes nothing; rumqttc would otherwise size its
            // outgoing in-flight table for 65,535 messages (about 14 MB, all touched).
            .set_outgoing_inflight_upper_limit(16)
            .set_max_packet_size(Some(u32::try_from(cfg.max_packet_bytes).unwrap_or(u32::MAX)))
            .set_request_channel_capacity(request_capacity(cfg))
            .set_transport(transport(cfg, tls));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            o.set_credentials(user, secrecy::ExposeSecret::expose_secret(pass));
        }
        o.set_network_options(network_options());
        let (client, eventloop) = v5::AsyncClient::new(o, request_capacity(cfg));
        V5 { client, eventloop }
    }
}

impl Session for V5 {
    async fn poll(&mut self) -> Result<Seen, String> {
        Ok(match self.eventloop.poll().await.map_err(|e| e.to_string())? {
            v5::Event::Incoming(p5::Packet::ConnAck(ack)) => Seen::ConnAck { session_present: ack.session_present },
            v5::Event::Incoming(p5::Packet::Publish(p)) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                let user_properties = p.properties.as_ref().map(|pr| pr.user_properties.clone()).unwrap_or_default();
                let payload = p.payload.clone();
                Seen::Publish(Box::new(Message { topic, payload, user_properties, handle: AckHandle::V5(p) }))
            }
            v5::Event::Incoming(p5::Packet::SubAck(ack)) => Seen::SubAck(
                ack.return_codes
                    .iter()
                    .map(|code| match code {
                        p5::SubscribeReasonCode::Success(v5::mqttbytes::QoS::AtMostOnce) => Grant::AtMostOnce,
                        p5::SubscribeReasonCode::Success(_) => Grant::AtLeastOnce,
                        other => Grant::Refused(format!("{other:?}")),
                    })
                    .collect(),
            ),
            _ => Seen::Other,
        })
    }

    fn subscribe(&self, cfg: &MqttConfig) -> Result<(), String> {
        let filters =
            cfg.subscriptions.iter().map(|s| p5::Filter::new(s.topic.clone(), v5::mqttbytes::QoS::AtLeastOnce));
        self.client.try_subscribe_many(filters).map_err(|e| e.to_string())
    }

    fn client(&self) -> Client {
        Client::V5(self.client.clone())
    }

    fn try_disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

/// MQTT 3.1.1.
struct V4 {
    client: rumqttc::AsyncClient,
    eventloop: rumqttc::EventLoop,
}

impl V4 {
    fn connect(cfg: &MqttConfig, tls: Option<Arc<rustls::ClientConfig>>) -> V4 {
        let mut o = rumqttc::MqttOptions::new(&cfg.client_id, &cfg.endpoint.host, cfg.endpoint.port);
        o.set_keep_alive(cfg.keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true)
            // MQTT 3.1.1 cannot tell the broker a size limit, and a packet over rumqttc's
            // limit drops the connection, after which the broker redelivers the same packet:
            // a loop that blocks all intake. So take anything the protocol allows, and let the
            // pipeline reject what exceeds max_payload_bytes. Cap sizes at the broker
            // (Mosquitto's message_size_limit).
            .set_max_packet_size(MQTT_MAX_PACKET, cfg.max_packet_bytes)
            .set_request_channel_capacity(request_capacity(cfg))
            .set_transport(transport(cfg, tls));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            o.set_credentials(user, secrecy::ExposeSecret::expose_secret(pass));
        }
        let (client, mut eventloop) = rumqttc::AsyncClient::new(o, request_capacity(cfg));
        eventloop.network_options = network_options();
        V4 { client, eventloop }
    }
}

impl Session for V4 {
    async fn poll(&mut self) -> Result<Seen, String> {
        Ok(match self.eventloop.poll().await.map_err(|e| e.to_string())? {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => {
                Seen::ConnAck { session_present: ack.session_present }
            }
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Seen::Publish(Box::new(Message {
                topic: p.topic.clone(),
                payload: p.payload.clone(),
                user_properties: Vec::new(),
                handle: AckHandle::V4(p),
            })),
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) => Seen::SubAck(
                ack.return_codes
                    .iter()
                    .map(|code| match code {
                        rumqttc::SubscribeReasonCode::Success(rumqttc::QoS::AtMostOnce) => Grant::AtMostOnce,
                        rumqttc::SubscribeReasonCode::Success(_) => Grant::AtLeastOnce,
                        rumqttc::SubscribeReasonCode::Failure => Grant::Refused("failure".to_owned()),
                    })
                    .collect(),
            ),
            _ => Seen::Other,
        })
    }

    fn subscribe(&self, cfg: &MqttConfig) -> Result<(), String> {
        let filters =
            cfg.subscriptions.iter().map(|s| rumqttc::SubscribeFilter::new(s.topic.clone(), rumqttc::QoS::AtLeastOnce));
        self.client.try_subscribe_many(filters).map_err(|e| e.to_string())
    }

    fn client(&self) -> Client {
        Client::V4(self.client.clone())
    }

    fn try_disconnect(&self) {
        let _ = self.client.try_disconnect();
    }
}

/// One generation: connect, subscribe on every CONNACK, forward messages and grants,
/// until the connection fails, a reconnect is forced, or `cancel`.
async fn drive(
    mut session: impl Session,
    cfg: &MqttConfig,
    generation: u64,
    tx: &mpsc::UnboundedSender<ConnEvent>,
    reconnect: &Notify,
    cancel: &CancellationToken,
) -> End {
    let mut connected = false;
    loop {
        let seen = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                session.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(500), session.poll()).await;
                return End::Cancelled;
            }
            () = reconnect.notified() => return End::Forced,
            e = session.poll() => e,
        };
        match seen {
            Ok(Seen::ConnAck { session_present }) => {
                connected = true;
                if let Err(e) = session.subscribe(cfg) {
                    return End::Failed { connected, error: format!("cannot subscribe: {e}") };
                }
                let _ = tx.send(ConnEvent::Connected { generation, client: session.client(), session_present });
            }
            Ok(Seen::Publish(message)) => {
                let _ = tx.send(ConnEvent::Message { generation, message });
            }
            Ok(Seen::SubAck(grants)) => {
                if all_granted(cfg, grants) {
                    let _ = tx.send(ConnEvent::Subscribed { generation });
                }
            }
            Ok(Seen::Other) => {}
            Err(error) => return End::Failed { connected, error },
        }
    }
}

/// Publish one message with QoS 1 and wait for the broker's PUBACK: `bullhorn send`.
pub async fn publish_once(
    cfg: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    topic: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    publish_once_with(cfg, tls, topic, payload, Vec::new(), timeout).await
}

/// [`publish_once`] with MQTT 5 user properties (ignored over 3.1.1, which has none).
pub async fn publish_once_with(
    cfg: &MqttConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    topic: &str,
    payload: Vec<u8>,
    user_properties: Vec<(String, String)>,
    timeout: Duration,
) -> Result<(), String> {
    // Unique per call: a broker may drop a connection that reuses an id it still tracks.
    let client_id = format!("{}-send-{}-{:08x}", cfg.client_id, std::process::id(), fastrand::u32(..));
    let wait = async {
        match cfg.protocol {
            Protocol::V5 => {
                let mut o = v5::MqttOptions::new(client_id, &cfg.endpoint.host, cfg.endpoint.port);
                o.set_clean_start(true).set_transport(transport(cfg, tls));
                if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
                    o.set_credentials(user, secrecy::ExposeSecret::expose_secret(pass));
                }
                let (client, mut el) = v5::AsyncClient::new(o, 8);
                let properties = p5::PublishProperties { user_properties, ..Default::default() };
                client
                    .publish_with_properties(topic, v5::mqttbytes::QoS::AtLeastOnce, false, payload, properties)
                    .await
                    .map_err(|e| e.to_string())?;
                loop {
                    match el.poll().await.map_err(|e| e.to_string())? {
                        v5::Event::Incoming(p5::Packet::PubAck(_)) => break,
                        v5::Event::Incoming(p5::Packet::Disconnect(d)) => {
                            return Err(format!("broker disconnected: {:?}", d.reason_code));
                        }
                        _ => {}
                    }
                }
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
            }
            Protocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(client_id, &cfg.endpoint.host, cfg.endpoint.port);
                o.set_clean_session(true).set_transport(transport(cfg, tls));
                if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
                    o.set_credentials(user, secrecy::ExposeSecret::expose_secret(pass));
                }
                let (client, mut el) = rumqttc::AsyncClient::new(o, 8);
                client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.map_err(|e| e.to_string())?;
                loop {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) =
                        el.poll().await.map_err(|e| e.to_string())?
                    {
                        break;
                    }
                }
                let _ = client.disconnect().await;
                let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| format!("no PUBACK from {} within {timeout:?}", cfg.endpoint))?
}
