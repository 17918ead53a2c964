//! Readiness shared by the tasks that know it: the ingest task sets `broker_connected`
//! (connected and every subscription granted),
//! the store writer sets `store_writable`, and `/readyz` reads both.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

#[derive(Debug)]
pub struct Health {
    broker_connected: AtomicBool,
    store_writable: AtomicBool,
}

/// What `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub broker_connected: bool,
    pub store_writable: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health { broker_connected: AtomicBool::new(false), store_writable: AtomicBool::new(true) }
    }
}

impl Health {
    pub fn set_broker_connected(&self, v: bool) {
        self.broker_connected.store(v, Ordering::Relaxed);
    }

    pub fn set_store_writable(&self, v: bool) {
        self.store_writable.store(v, Ordering::Relaxed);
    }

    pub fn store_writable(&self) -> bool {
        self.store_writable.load(Ordering::Relaxed)
    }

    pub fn readiness(&self) -> Readiness {
        let broker_connected = self.broker_connected.load(Ordering::Relaxed);
        let store_writable = self.store_writable();
        Readiness { ready: broker_connected && store_writable, broker_connected, store_writable }
    }
}
