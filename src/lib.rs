//! mcp-edge: an MCP gateway on Pingora. One endpoint in front of many MCP servers: tool calls
//! routed by name, lists merged, sessions sealed so instances share nothing.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod config;
pub mod ctx;
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod housekeeping;
pub mod http;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod store;
pub mod tls;
pub mod upgrade;
pub mod upstream;
