//! `GET /logs/:name/:version/:platform` (docs/api.md): a build's log as
//! text, the latest attempt or `?attempt=N`, whole or its last `?tail=N`
//! lines; with `?follow=1` streamed while the build runs (`logfollow`).

use crate::app::App;
use crate::error::ApiError;
use crate::http::{BodySource, Reply, Request};
use crate::logfollow::{self, Follower};
use crate::store::Store;
use crate::validate::{self, Query};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const TEXT: &str = "text/plain; charset=utf-8";

pub fn get(app: &App, req: &mut Request<'_>) -> Result<Reply, ApiError> {
    let (name, version, platform) = (req.param(0), req.param(1), req.param(2));
    validate::name_like(name, "name")?;
    validate::name_like(version, "version")?;
    let query = Query::parse(req.query())?;
    let attempt = logfollow::parse_attempt(query.get("attempt"))?;
    let follow = logfollow::parse_follow(query.get("follow"))?;
    let tail = logfollow::parse_tail(query.get("tail"))?;
    let log = logfollow::locate(app.store.as_ref(), name, version, platform, attempt)?;
    let reply = if follow {
        let app = app
            .shared()
            .ok_or_else(|| ApiError::internal("the service is stopping"))?;
        let follower = Follower::new(AppStore(app), &log).with_tail(tail);
        Reply::stream(200, TEXT, Box::new(FollowBody(follower)))
    } else {
        Reply::text(
            200,
            TEXT,
            logfollow::read_all(app.store.as_ref(), &log, tail)?,
        )
    };
    Ok(reply
        .with_header("Cache-Control", "no-store")
        .with_header("X-Log-Attempt", log.attempt.to_string()))
}

/// The service's store, reached through the shared context.
struct AppStore(Arc<App>);

impl std::ops::Deref for AppStore {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        self.0.store.as_ref()
    }
}

/// A followed log as the body of a streamed reply.
struct FollowBody(Follower<AppStore>);

impl BodySource for FollowBody {
    fn next_piece(&mut self, stop: &AtomicBool) -> Option<Vec<u8>> {
        self.0.next_text(stop).map(String::into_bytes)
    }
}
