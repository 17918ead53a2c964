//! A scripted MQTT 3.1.1 broker with a persistent session, for the model test: it keeps
//! every message published to its one client until that client acknowledges it, sends
//! what is unacknowledged again (DUP set) each time the client reconnects, and records
//! every PUBACK with the connection it came on. A real broker does the same but does not
//! show which message was acknowledged when; this exists to observe it.
//!
//! Message `i` (from 0) always travels as packet id `i + 1`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PingResp, Publish, SubAck, SubscribeReasonCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    messages: Vec<(String, Vec<u8>)>,
    sent: Vec<bool>,
    acked: Vec<bool>,
    /// (connection, message) of every PUBACK, in the order they arrived.
    acks: Vec<(u64, usize)>,
    /// A client connected with a persistent session before.
    session: bool,
    connections: u64,
    /// The current connection has subscribed.
    subscribed: bool,
}

pub struct SessionBroker {
    pub port: u16,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl SessionBroker {
    pub async fn start() -> SessionBroker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let wake = Arc::new(Notify::new());
        let (s, w) = (Arc::clone(&state), Arc::clone(&wake));
        let task = tokio::spawn(async move {
            // One client at a time: a new connection replaces the old one, as a broker
            // takes over a session when its client id connects again.
            let mut current: Option<tokio::task::JoinHandle<()>> = None;
            while let Ok((sock, _)) = listener.accept().await {
                if let Some(old) = current.take() {
                    old.abort();
                }
                let n = {
                    let mut st = s.lock().expect("lock");
                    st.connections += 1;
                    st.subscribed = false;
                    st.connections
                };
                current = Some(tokio::spawn(serve(sock, n, Arc::clone(&s), Arc::clone(&w))));
            }
        });
        SessionBroker { port, state, wake, task }
    }

    /// Queue a QoS 1 message for the client; returns its index.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) -> usize {
        let i = {
            let mut st = self.state.lock().expect("lock");
            st.messages.push((topic.to_owned(), payload));
            st.sent.push(false);
            st.acked.push(false);
            st.messages.len() - 1
        };
        self.wake.notify_waiters();
        i
    }

    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.state.lock().expect("lock").messages.clone()
    }

    /// (connection, message index) of every PUBACK so far, in arrival order.
    pub fn acks(&self) -> Vec<(u64, usize)> {
        self.state.lock().expect("lock").acks.clone()
    }

    pub fn acked(&self) -> BTreeSet<usize> {
        let st = self.state.lock().expect("lock");
        (0..st.acked.len()).filter(|i| st.acked[*i]).collect()
    }

    pub fn unacked(&self) -> usize {
        self.state.lock().expect("lock").acked.iter().filter(|a| !**a).count()
    }

    /// The client has subscribed on its current connection.
    pub fn subscribed(&self) -> bool {
        self.state.lock().expect("lock").subscribed
    }

    /// The packet ids of the PUBACKs so far, in the order they arrived.
    pub fn ack_ids(&self) -> Vec<u16> {
        self.acks().into_iter().map(|(_, i)| u16::try_from(i + 1).unwrap_or(u16::MAX)).collect()
    }
}

impl Drop for SessionBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn write(sock: &mut tokio::net::TcpStream, packet: impl FnOnce(&mut BytesMut)) -> bool {
    let mut out = BytesMut::new();
    packet(&mut out);
    sock.write_all(&out).await.is_ok()
}

/// Send every unacknowledged message not yet sent on this connection.
async fn flush(sock: &mut tokio::net::TcpStream, state: &Mutex<State>, on_this: &mut BTreeSet<usize>) -> bool {
    let due: Vec<(usize, String, Vec<u8>, bool)> = {
        let mut st = state.lock().expect("lock");
        let idx: Vec<usize> = (0..st.messages.len()).filter(|i| !st.acked[*i] && !on_this.contains(i)).collect();
        idx.into_iter()
            .map(|i| {
                let dup = st.sent[i];
                st.sent[i] = true;
                (i, st.messages[i].0.clone(), st.messages[i].1.clone(), dup)
            })
            .collect()
    };
    for (i, topic, payload, dup) in due {
        on_this.insert(i);
        let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
        p.pkid = u16::try_from(i + 1).expect("fewer than 65535 messages");
        p.dup = dup;
        if !write(sock, |out| {
            p.write(out).expect("publish");
        })
        .await
        {
            return false;
        }
    }
    true
}

async fn serve(mut sock: tokio::net::TcpStream, conn: u64, state: Arc<Mutex<State>>, wake: Arc<Notify>) {
    let mut buf = BytesMut::new();
    let mut subscribed = false;
    let mut on_this = BTreeSet::new();
    loop {
        loop {
            match Packet::read(&mut buf, 1 << 20) {
                Ok(Packet::Connect(c)) => {
                    let present = {
                        let mut st = state.lock().expect("lock");
                        let present = st.session && !c.clean_session;
                        st.session = !c.clean_session;
                        present
                    };
                    if !write(&mut sock, |out| {
                        ConnAck::new(ConnectReturnCode::Success, present).write(out).expect("connack");
                    })
                    .await
                    {
                        return;
                    }
                }
                Ok(Packet::Subscribe(sub)) => {
                    let codes = sub.filters.iter().map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce)).collect();
                    if !write(&mut sock, |out| {
                        SubAck::new(sub.pkid, codes).write(out).expect("suback");
                    })
                    .await
                    {
                        return;
                    }
                    subscribed = true;
                    state.lock().expect("lock").subscribed = true;
                    if !flush(&mut sock, &state, &mut on_this).await {
                        return;
                    }
                }
                Ok(Packet::PubAck(ack)) => {
                    let mut st = state.lock().expect("lock");
                    let i = usize::from(ack.pkid) - 1;
                    if let Some(a) = st.acked.get_mut(i) {
                        *a = true;
                    }
                    st.acks.push((conn, i));
                }
                Ok(Packet::PingReq) => {
                    if !write(&mut sock, |out| {
                        PingResp.write(out).expect("pingresp");
                    })
                    .await
                    {
                        return;
                    }
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
            () = wake.notified() => {
                if subscribed && !flush(&mut sock, &state, &mut on_this).await {
                    return;
                }
            }
            // A publish that raced the notification is not left waiting.
            () = tokio::time::sleep(Duration::from_millis(50)), if subscribed => {
                if !flush(&mut sock, &state, &mut on_this).await {
                    return;
                }
            }
        }
    }
}
