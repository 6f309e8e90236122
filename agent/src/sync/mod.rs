//! Sync with the OMS over MQTT: the only code that knows MQTT and its topics.
//!
//! - [`agent`]: the agent's link (down messages in, outbox events out).
//! - [`mqtt`]: broker URL, credentials and TLS to rumqttc options.
//! - [`oms`]: the durable OMS side (`OmsSession`); [`tools`]: `floorhand oms ...`.
//! - [`backoff`]: reconnect delays; [`pubacks`]: which PUBACK belongs to which event
//!   (both pure). The channel bookkeeping is [`crate::ledger`].

pub mod agent;
pub mod backoff;
pub mod link;
pub mod mqtt;
pub mod oms;
pub mod pubacks;
pub mod tools;
