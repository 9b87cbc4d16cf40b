//! What jobs share for reading their input: [`check`], the source name and
//! URL checks; [`lines`], one bounded NDJSON
//! line reader (a line over the limit is counted as malformed and read
//! through, never buffered whole, never a hang); [`stats`], what reading a
//! source found; [`http`], NDJSON fetched over HTTP with a body cap, and
//! [`http_auth`], the secret headers an HTTP source sends;
//! [`table`], CSV and Parquet files streamed through polars in bounded
//! batches; [`postgres`], a PostgreSQL query's rows as JSON records with a
//! cursor.

pub mod check;
pub mod http;
pub mod http_auth;
pub mod http_stream;
pub mod lines;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod stats;
#[cfg(feature = "table")]
pub mod table;

pub use lines::{LastLine, LineReader, Piece, DEFAULT_MAX_LINE};
pub use stats::{SourceStats, SAMPLES};
