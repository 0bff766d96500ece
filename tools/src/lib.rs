//! tools

pub mod config;
pub mod flags;
pub mod serve;
pub mod sim;
