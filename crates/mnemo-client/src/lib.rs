//! # mnemo-client
//!
//! A Rust client for [Mnemo](https://github.com/), the streaming memory server:
//! a connection ([`ConnectOptions`]: address, TLS, API key), the protocol's calls
//! on [`Client`], and a session driver that streams observations the way the
//! protocol asks (credit window, re-send after `retry_after`, resume after a
//! reconnect or a server restart, exactly once). It depends on neither the server
//! nor the engine.
//!
//! ```no_run
//! use mnemo_client::{Client, ConnectOptions, Feed, SessionOptions, pb};
//!
//! /// Observations from memory; a feed may also read a file or a channel.
//! struct Notes(std::vec::IntoIter<(String, Vec<f32>)>);
//!
//! impl Feed for Notes {
//!     fn next(&mut self, _sequence: u64) -> mnemo_client::Result<Option<pb::Observation>> {
//!         Ok(self.0.next().map(|(content, embedding)| pb::Observation {
//!             content,
//!             embedding,
//!             ..Default::default()
//!         }))
//!     }
//! }
//!
//! # async fn run() -> mnemo_client::Result<()> {
//! let client = Client::connect(ConnectOptions::new("http://127.0.0.1:7400")).await?;
//! client
//!     .create_space(pb::CreateSpaceRequest { name: "notes".into(), dim: 3, ..Default::default() })
//!     .await?;
//! let mut feed = Notes(vec![("tea at noon".to_string(), vec![1.0, 0.0, 0.0])].into_iter());
//! let done = client.observe(SessionOptions::new("notes"), &mut feed, &mut ()).await?;
//! assert_eq!(done.accepted, 1); // durable and visible now
//! let found = client
//!     .recall_once(pb::RecallRequest {
//!         space: "notes".into(),
//!         cue: vec![1.0, 0.0, 0.0],
//!         k: 5,
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("{}", found.memories[0].content);
//! # Ok(()) }
//! ```
//!
//! Errors are [`Error`]: a server status ([`Error::Status`], with
//! [`Error::retry_after`] when the server asked to wait), a per-observation
//! refusal that a retry cannot fix ([`Error::Rejected`]), settings, connection
//! and protocol errors. The generated types are re-exported as [`pb`].

mod calls;
mod connect;
mod error;
pub mod session;

pub use calls::Client;
pub use connect::{Bearer, ConnectOptions, Stub};
pub use error::{Error, Result};
pub use mnemo_proto::{pack_f32, pb, unpack_f32};
pub use session::{Feed, ObserveStream, SessionEvents, SessionOptions, SessionSummary};
