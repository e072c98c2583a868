//! Portcullis: just-in-time network access to management ports.
//!
//! This crate is shared by the server (feature `ssr`) and the browser bundle (feature
//! `hydrate`): the domain core, the pages, and the server functions the pages call.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod components;
pub mod domain;
pub mod error;
pub mod model;
pub mod pages;
pub mod timeline;

#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod metrics;
#[cfg(feature = "ssr")]
pub mod services;
#[cfg(feature = "ssr")]
pub mod state;
#[cfg(feature = "ssr")]
pub mod store;
