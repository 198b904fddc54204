//! Endpoint handlers: the per-endpoint layers of the pipeline (body → route → dispatch → response).

pub mod admin;
pub mod chat;
pub mod embeddings;
pub mod models;
