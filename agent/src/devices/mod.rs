//! Adapters for the hardware beside the agent: the only code that opens serial ports or
//! sockets to devices. Each submodule owns one kind of device.

pub mod printer;
pub mod scale;
pub mod scanner;
pub mod terminal;
