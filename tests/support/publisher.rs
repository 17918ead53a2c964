//! A test-side MQTT publisher: QoS 1, waits for each PUBACK, and retries through broker
//! restarts, so "published" means the broker took responsibility for the message.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

pub struct Publisher {
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Publisher {
    pub fn new(port: u16, id: &str) -> Publisher {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5)).set_clean_session(true).set_max_packet_size(64 << 20, 64 << 20);
        let (client, eventloop) = AsyncClient::new(o, 64);
        Publisher { client, eventloop }
    }

    /// Publish and wait for the broker's PUBACK; reconnect and resend on failure, for at
    /// most `timeout` in all.
    pub async fn publish(&mut self, topic: &str, payload: impl Into<Vec<u8>>, timeout: Duration) {
        let payload: Vec<u8> = payload.into();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "publish to {topic} not acknowledged in {timeout:?}");
            self.client.publish(topic, QoS::AtLeastOnce, false, payload.clone()).await.expect("queue publish");
            let acked = tokio::time::timeout_at(deadline, async {
                loop {
                    match self.eventloop.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            return false;
                        }
                    }
                }
            })
            .await;
            if acked == Ok(true) {
                return;
            }
            // The connection failed: rumqttc resends the pending publish itself only for
            // persistent sessions, so start over with a clean state.
            let o = self.eventloop.mqtt_options.clone();
            let (client, eventloop) = AsyncClient::new(o, 64);
            self.client = client;
            self.eventloop = eventloop;
        }
    }
}
