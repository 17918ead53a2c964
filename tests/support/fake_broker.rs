//! A scripted MQTT 3.1.1 broker that speaks the real wire protocol (rumqttc's packet
//! codec) to one client at a time, publishes what the test asks with QoS 1, and records
//! the PUBACKs it gets back in the order they arrive. A real broker does not expose that
//! order; this exists to observe it.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PingResp, Publish, SubAck, SubscribeReasonCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

pub struct FakeBroker {
    pub port: u16,
    acks: Arc<Mutex<Vec<u16>>>,
    subscribed: Arc<Mutex<bool>>,
    outbox: mpsc::UnboundedSender<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    pub async fn start() -> FakeBroker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(Mutex::new(false));
        let (outbox, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let (a, s) = (Arc::clone(&acks), Arc::clone(&subscribed));
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = BytesMut::new();
            let mut pkid = 0u16;
            loop {
                // Decode whatever complete packets are buffered.
                loop {
                    match Packet::read(&mut buf, 1 << 20) {
                        Ok(Packet::Connect(_)) => {
                            let mut out = BytesMut::new();
                            ConnAck::new(ConnectReturnCode::Success, false).write(&mut out).expect("connack");
                            sock.write_all(&out).await.expect("write");
                        }
                        Ok(Packet::Subscribe(sub)) => {
                            let codes =
                                sub.filters.iter().map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce)).collect();
                            let mut out = BytesMut::new();
                            SubAck::new(sub.pkid, codes).write(&mut out).expect("suback");
                            sock.write_all(&out).await.expect("write");
                            *s.lock().expect("lock") = true;
                        }
                        Ok(Packet::PubAck(ack)) => a.lock().expect("lock").push(ack.pkid),
                        Ok(Packet::PingReq) => {
                            let mut out = BytesMut::new();
                            PingResp.write(&mut out).expect("pingresp");
                            sock.write_all(&out).await.expect("write");
                        }
                        Ok(Packet::Disconnect) => return,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                tokio::select! {
                    n = sock.read_buf(&mut buf) => {
                        if n.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    msg = rx.recv() => {
                        let Some((topic, payload)) = msg else { return };
                        pkid += 1;
                        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
                        p.pkid = pkid;
                        let mut out = BytesMut::new();
                        p.write(&mut out).expect("publish");
                        sock.write_all(&out).await.expect("write");
                    }
                }
            }
        });
        FakeBroker { port, acks, subscribed, outbox, task }
    }

    /// Send a QoS 1 PUBLISH; packet ids count up from 1.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.outbox.send((topic.to_owned(), payload.into())).expect("broker task running");
    }

    pub fn acks(&self) -> Vec<u16> {
        self.acks.lock().expect("lock").clone()
    }

    pub fn subscribed(&self) -> bool {
        *self.subscribed.lock().expect("lock")
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
