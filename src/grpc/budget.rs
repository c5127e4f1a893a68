//! The per-connection bound on replies held unsent (SPEC "queue over gRPC":
//! memory bounded whatever the peers do).
//!
//! HTTP/2 flow control lets a peer stop the server's replies: a window of
//! zero, and every reply (a `peek` of a 64 KiB item is 64 KiB) waits in
//! the server until the peer reads. `max_concurrent_streams` alone allows
//! 256 such replies per connection (16 MiB). So each call takes a slot of
//! its connection's [`ReplyBudget`] before it runs, and gives it back only
//! when its reply has been handed to the socket (the response body is
//! dropped): a peer that does not read gets at most that many calls
//! answered, and its later calls wait, holding their headers only.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

use super::incoming::ConnInfo;

/// The slots of one connection.
#[derive(Debug, Clone)]
pub struct ReplyBudget(Arc<Semaphore>);

impl ReplyBudget {
    pub fn new(slots: usize) -> Self {
        ReplyBudget(Arc::new(Semaphore::new(slots)))
    }
}

/// The tower layer ([`tonic::transport::Server::layer`]) that applies the
/// budget of the connection each request came on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyBudgetLayer;

impl<S> tower_layer::Layer<S> for ReplyBudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted { inner }
    }
}

/// A service whose replies hold a slot of their connection's budget.
#[derive(Debug, Clone)]
pub struct Budgeted<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ReqBody> Service<http::Request<ReqBody>> for Budgeted<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    type Response = http::Response<Held<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let budget = request
            .extensions()
            .get::<ConnInfo>()
            .map(|info| Arc::clone(&info.replies.0));
        // The clone is not ready; the one poll_ready made ready is taken.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // The semaphore is never closed, so acquiring fails never.
            let slot = match budget {
                Some(budget) => budget.acquire_owned().await.ok(),
                None => None,
            };
            let response = inner.call(request).await?;
            Ok(response.map(|body| Held { body, _slot: slot }))
        })
    }
}

/// A reply body holding its connection's slot until it is dropped.
#[derive(Debug)]
pub struct Held<B> {
    body: B,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<B: Body + Unpin> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
