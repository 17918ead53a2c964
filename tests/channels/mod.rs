//! Each platform's channel called directly against its fake: post, reply, delete, media,
//! throttle then success, a permanent error, refused credentials, and a timeout after
//! the post was made, resolved by the platform's own duplicate protection.

mod bluesky;
mod discord;
mod email;
mod mastodon;
mod meta;
mod nextdoor;
mod slack;
mod sms;
mod teams;
mod telegram;
mod x;
