//! The admin commands of the trusteeship's lifetime, for the customer and the operator:
//! `treuhand tenant status|policy|grants|rotate|rewrap|shred|handover`,
//! `treuhand operator ...`, `treuhand receipt verify` and `treuhand audit pull`.
//!
//! Every command reads an admin profile ([`profile`]): who the caller is (mTLS identity), which
//! holders to talk to, where the customer's shares and the proxy registration live and, for the
//! commands that go through S3, the S3 endpoint. Every command takes `--json` ([`output`]).
//!
//! Rooms:
//! - [`profile`]: the profile file and the clients it builds;
//! - [`cli`]: the clap commands and their dispatch; [`args`]: `--profile` and `--json`;
//! - [`holders`]: asking every holder of a profile at once, and the report formatters;
//! - [`status`]: `tenant status`;
//! - [`output`]: human or JSON output;
//! - [`customer`]: policy and grants (the customer admin);
//! - [`operator`]: grant requests and listings (the operator);
//! - [`receipt`]: shred receipts;
//! - [`audit`]: incremental audit verification (`audit pull`);
//! - [`lifecycle`]: rotate and shred;
//! - [`rewrap`]: moving objects of one key version to the current one over S3;
//! - [`handover`]: re-dealing a departing holder's share to a new trustee.
//! - [`s3client`]: the small signed S3 client of `rewrap`.

pub mod args;
pub mod audit;
pub mod cli;
pub mod customer;
pub mod handover;
pub mod holders;
pub mod lifecycle;
pub mod operator;
pub mod output;
pub mod profile;
pub mod receipt;
pub mod rewrap;
pub mod s3client;
pub mod status;
