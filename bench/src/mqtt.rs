//! MQTT helpers: a fast QoS 1 publisher that keeps many messages in flight, and a bare
//! subscriber that only counts (the broker's baseline).

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};

fn options(id: &str, port: u16, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(clean)
        .set_inflight(500)
        .set_max_packet_size(1 << 20, 1 << 20);
    o
}

fn nodelay() -> NetworkOptions {
    let mut n = NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

/// Publish every payload with QoS 1 and wait until all are acknowledged by the broker.
pub async fn publish_all(port: u16, topic: &str, payloads: impl IntoIterator<Item = Vec<u8>>) -> usize {
    let (client, mut el) = AsyncClient::new(options(&format!("bench-pub-{}", super::unique()), port, true), 1000);
    el.network_options = nodelay();
    let payloads: Vec<Vec<u8>> = payloads.into_iter().collect();
    let total = payloads.len();
    let topic = topic.to_owned();
    let sender = tokio::spawn(async move {
        for p in payloads {
            client.publish(topic.clone(), QoS::AtLeastOnce, false, p).await.expect("publish");
        }
        client
    });
    let mut acked = 0;
    while acked < total {
        match el.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("publisher: {e}"),
        }
    }
    let client = sender.await.expect("sender");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), el.poll()).await;
    acked
}

/// Create a persistent session subscribed to `filter`, then leave.
pub async fn create_session(port: u16, id: &str, filter: &str) {
    let (client, mut el) = AsyncClient::new(options(id, port, false), 10);
    client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe");
    loop {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = el.poll().await {
            break;
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(300), el.poll()).await;
}

/// Reconnect the session `id` and count its backlog of `n` messages (rumqttc acks each
/// QoS 1 message itself). Returns the time from CONNACK to the last message.
pub async fn drain(port: u16, id: &str, n: usize) -> Duration {
    let (_client, mut el) = AsyncClient::new(options(id, port, false), 1000);
    el.network_options = nodelay();
    let mut start = None;
    let mut got = 0;
    while got < n {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => start = Some(Instant::now()),
            Ok(Event::Incoming(Packet::Publish(_))) => got += 1,
            Ok(_) => {}
            Err(e) => panic!("subscriber: {e}"),
        }
    }
    start.expect("connack").elapsed()
}

/// A connected publisher for a steady stream: each publish returns once it is sent.
pub struct Steady {
    client: AsyncClient,
}

impl Steady {
    pub async fn connect(port: u16) -> Steady {
        let (client, mut el) = AsyncClient::new(options(&format!("bench-steady-{}", super::unique()), port, true), 100);
        el.network_options = nodelay();
        tokio::spawn(async move { while el.poll().await.is_ok() {} });
        Steady { client }
    }

    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("publish");
    }
}
