//! Lambda compatibility at the edges: what AWS Lambda's interfaces look
//! like where they meet sprout (the environment a function sees). Inside,
//! the vocabulary stays sprout's.

#![deny(unsafe_code)]

pub mod env;
