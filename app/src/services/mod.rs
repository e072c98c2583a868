//! Services carry out what the domain decided, using the store. Server functions and
//! (later) the REST API call these; neither talks to the store directly.

pub mod users;
