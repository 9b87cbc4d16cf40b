//! End-to-end tests: the real `patrol` binary against real databases.

mod support;
