//! Sync with the OMS over MQTT: the only code that knows MQTT and its topics.
//!
//! - [`agent`]: the agent's link (down messages in, outbox events out).
//! - [`oms`]: the OMS side, for `floorhand oms ...` tools, tests and the demo.
//! - [`mqtt`]: broker URL, credentials and TLS to rumqttc options.
//! - [`backoff`]: reconnect delays (pure). The channel bookkeeping is [`crate::ledger`].

pub mod agent;
pub mod backoff;
pub mod mqtt;
pub mod oms;
pub mod tools;
