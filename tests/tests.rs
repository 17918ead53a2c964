//! Integration tests, compiled as one binary. They drive real components: the embedded
//! broker or a Mosquitto started by the test on a free port, real SQLite files, real
//! HTTP over loopback to fake platforms, and the `bullhorn` binary where a test must kill
//! it. Fakes live in `support/`.

mod support;

mod ack;
mod bad_input;
mod channels;
mod cli;
mod conformance;
mod crash;
mod delivery;
mod e2e;
mod faults;
mod layers;
mod lifecycle;
mod media;
mod model;
mod ops;
mod reload;
mod security;
mod social;
mod systemd;
mod tls;
