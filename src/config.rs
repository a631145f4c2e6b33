//! Configuration: raw files (`raw`), validation (`compile`) and the runtime view (`snapshot`).

pub mod compile;
pub mod live;
mod oauth_profile;
pub mod raw;
pub mod reload;
mod security;
pub mod snapshot;

pub use compile::{ConfigError, ConfigErrors, Source, check_oauth_profile, compile, load};
pub use live::Live;
pub use snapshot::{Route, Snapshot};
