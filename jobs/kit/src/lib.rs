//! What jobs share for reading their input: [`lines`], one bounded NDJSON
//! line reader (a line over the limit is counted as malformed and read
//! through, never buffered whole, never a hang); [`stats`], what reading a
//! source found; [`http`], NDJSON fetched over HTTP with a body cap.

pub mod http;
pub mod lines;
pub mod stats;

pub use lines::{LastLine, LineReader, Piece, DEFAULT_MAX_LINE};
pub use stats::{SourceStats, SAMPLES};
