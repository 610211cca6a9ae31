//! Before Herald is active: the link is connected (or trying) but another
//! Herald holds the jobs queue, or none is connected yet. Nothing else
//! is started meanwhile: no store (its file lock is the active Herald's
//! while both share it), no XMPP connection (Prosody would refuse it,
//! ejabberd would split the domain's presence between the two), no
//! control requests. `/healthz` answers, `/readyz` says why not, and
//! `herald_active` is 0.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::amqp::{Link, LinkEvent};
use crate::store::{Contents, StoreError};

/// How often a Herald that holds the jobs queue tries to open a store
/// another Herald still holds.
const STORE_RETRY: Duration = Duration::from_millis(250);

/// Waits until the link holds the jobs queue: the generation of its
/// connection and, with the store in a stream, what the link read from it;
/// `None` if `shutdown` came first. The link logs that it stands by and
/// keeps trying ([`crate::amqp`]); deliveries wait in the link's channel
/// until the core is there to take them.
pub(super) async fn until_active<F: Future<Output = ()>>(
    link: &mut Link,
    mut shutdown: Pin<&mut F>,
) -> Result<Option<(u64, Option<Box<Contents>>)>, StoreError> {
    let mut from_stream = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down before this Herald became active");
                return Ok(None);
            }
            event = link.events.recv() => match event {
                Some(LinkEvent::Up { generation }) => return Ok(Some((generation, from_stream))),
                Some(LinkEvent::StoreRead(Ok(contents))) => from_stream = Some(contents),
                Some(LinkEvent::StoreRead(Err(e))) => return Err(StoreError::Stream(e)),
                // Standby (the link logged it and set the metrics): nothing
                // else comes before Up.
                Some(_) => {}
                // The link task is gone (it panicked): nothing to serve.
                None => return Ok(None),
            },
        }
    }
}

/// Opens the store with `open`; while another Herald holds its lock, tries
/// again every [`STORE_RETRY`]: an active Herald that lost the jobs queue
/// to this one steps down, finishing its writes, and lets go of the store
/// only then. `None` if `shutdown` came first.
pub(super) async fn open_store<T, F: Future<Output = ()>>(
    open: impl Fn() -> Result<T, StoreError>,
    mut shutdown: Pin<&mut F>,
) -> Result<Option<T>, StoreError> {
    let mut waiting = false;
    loop {
        match open() {
            Err(StoreError::Locked { path }) => {
                if !waiting {
                    waiting = true;
                    tracing::warn!(path = %path.display(), "the store is in use by another Herald; waiting for it to let go");
                }
                tokio::select! {
                    _ = &mut shutdown => return Ok(None),
                    _ = tokio::time::sleep(STORE_RETRY) => {}
                }
            }
            opened => return opened.map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::PathBuf;

    use super::*;

    fn locked() -> StoreError {
        StoreError::Locked {
            path: PathBuf::from("herald.store"),
        }
    }

    #[tokio::test]
    async fn a_store_another_herald_holds_is_opened_once_it_lets_go() {
        let tries = Cell::new(0);
        let open = || {
            tries.set(tries.get() + 1);
            if tries.get() < 3 {
                Err(locked())
            } else {
                Ok("opened")
            }
        };
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        let opened = open_store(open, shutdown.as_mut()).await;
        assert_eq!(opened.ok().flatten(), Some("opened"));
        assert_eq!(tries.get(), 3);
    }

    #[tokio::test]
    async fn any_other_store_error_ends_the_wait_at_once() {
        let tries = Cell::new(0);
        let open = || -> Result<(), StoreError> {
            tries.set(tries.get() + 1);
            Err(StoreError::Unrecognized {
                path: PathBuf::from("herald.store"),
                redb: false,
            })
        };
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        let opened = open_store(open, shutdown.as_mut()).await;
        assert!(matches!(opened, Err(StoreError::Unrecognized { .. })));
        assert_eq!(tries.get(), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_for_a_store_held_by_another() {
        let shutdown = std::future::ready(());
        tokio::pin!(shutdown);
        let opened = open_store(
            || -> Result<(), StoreError> { Err(locked()) },
            shutdown.as_mut(),
        )
        .await;
        assert!(matches!(opened, Ok(None)));
    }
}
