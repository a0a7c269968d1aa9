//! The fences that stop a write which must not happen, on both backends:
//! the write lease (a replica that lost it commits nothing) and the
//! checkpoint (a batch moves it on only from where its writer's last
//! commit left it, so a database that lost commits is noticed).

use std::time::Duration;

use alloy::primitives::{Address, B256};
use liqpass_indexer::domain::{BlockRef, Scope};
use liqpass_indexer::store::{checkpoint, StoreError};

use crate::support::db::{Backend, Db};

fn wallet(n: u8) -> Address {
    Address::repeat_byte(n)
}

fn block(n: u64) -> BlockRef {
    BlockRef {
        number: n,
        hash: B256::repeat_byte(n as u8),
    }
}

/// A write that moves the checkpoint to `block`: enough to see whether a
/// fenced transaction committed.
struct MoveCheckpoint(liqpass_indexer::domain::Scope, u64);

impl liqpass_indexer::store::TxWork for MoveCheckpoint {
    type Output = ();
    fn run<'t>(
        &'t self,
        tx: &'t mut liqpass_indexer::store::Conn<'t>,
    ) -> impl std::future::Future<Output = Result<(), liqpass_indexer::store::StoreError>> + Send + 't
    {
        let block = block(self.1);
        async move { liqpass_indexer::store::checkpoint::set(tx, &self.0, &block).await }
    }
}

both_backends!(
    the_write_lease_fences_every_transaction_of_a_replica_that_lost_it,
    lease_fences
);
async fn lease_fences(backend: Backend) {
    use liqpass_indexer::store::lease;
    use liqpass_indexer::store::StoreError;
    let db = Db::on(backend).await;
    let scope = liqpass_indexer::domain::Scope {
        chain_id: 8453,
        contract: wallet(0xcc),
    };
    let ttl = Duration::from_secs(30);
    let conn = || async { db.store.conn().await.expect("a connection") };
    let checkpoint = || async {
        liqpass_indexer::store::checkpoint::read(&mut conn().await.conn(), &scope)
            .await
            .expect("checkpoint")
            .map(|c| c.number)
    };

    let a = lease::take(&mut conn().await.conn(), &scope, "replica-a", ttl)
        .await
        .expect("take");
    assert_eq!(a, Some(1), "a free lease is taken under epoch 1");
    assert_eq!(
        lease::take(&mut conn().await.conn(), &scope, "replica-b", ttl)
            .await
            .expect("take"),
        None,
        "a live lease is not taken over"
    );
    let fence_a = lease::Fence {
        scope,
        holder: "replica-a".into(),
        epoch: 1,
    };
    let as_a = db.store.fenced(fence_a.clone(), ttl);
    as_a.write(&MoveCheckpoint(scope, 10))
        .await
        .expect("the leader writes");
    assert_eq!(checkpoint().await, Some(10));

    // Time passes past the TTL (as for a paused leader, or one locked out
    // by SQLite's write lock) and nobody takes the lease over: nobody wrote
    // under another epoch, so it is still A's, and A's next commit renews it.
    let expire = || db.execute("UPDATE indexer_lease SET expires_at = '2000-01-01T00:00:00.000Z'");
    expire().await;
    as_a.write(&MoveCheckpoint(scope, 11))
        .await
        .expect("an expired lease nobody took is still the leader's");
    assert_eq!(checkpoint().await, Some(11));
    assert_eq!(
        lease::take(&mut conn().await.conn(), &scope, "replica-b", ttl)
            .await
            .expect("take"),
        None,
        "the leader's commit renewed it"
    );

    // Expired again, and this time taken over: from then on A writes nothing.
    expire().await;
    let b = lease::take(&mut conn().await.conn(), &scope, "replica-b", ttl)
        .await
        .expect("take");
    assert_eq!(b, Some(2), "a takeover bumps the epoch");
    let fence_b = lease::Fence {
        scope,
        holder: "replica-b".into(),
        epoch: 2,
    };
    let as_b = db.store.fenced(fence_b.clone(), ttl);
    as_b.write(&MoveCheckpoint(scope, 12))
        .await
        .expect("the new leader writes");
    assert!(matches!(
        as_a.write(&MoveCheckpoint(scope, 13)).await,
        Err(StoreError::Fenced { epoch: 1 })
    ));
    assert!(
        !lease::renew(&mut conn().await.conn(), &fence_a, ttl)
            .await
            .expect("renew"),
        "the old leader cannot renew"
    );
    assert!(!lease::release(&mut conn().await.conn(), &fence_a)
        .await
        .expect("release"));
    assert_eq!(checkpoint().await, Some(12), "only the new leader's writes");

    // A clean release hands over at once, under the next epoch.
    assert!(lease::release(&mut conn().await.conn(), &fence_b)
        .await
        .expect("release"));
    assert_eq!(
        lease::take(&mut conn().await.conn(), &scope, "replica-a", ttl)
            .await
            .expect("take"),
        Some(3)
    );
    let held = lease::current(&mut conn().await.conn(), &scope)
        .await
        .expect("read")
        .expect("a lease");
    assert_eq!(
        (held.holder.as_str(), held.epoch, held.live),
        ("replica-a", 3, true)
    );
}

/// `checkpoint::advance` in a transaction of its own, committed if it moved.
async fn advance(
    db: &Db,
    scope: &Scope,
    from: Option<BlockRef>,
    to: u64,
) -> Result<(), StoreError> {
    let mut tx = db.store.begin().await.expect("begin");
    checkpoint::advance(&mut tx.conn(), scope, from.as_ref(), &block(to)).await?;
    tx.commit().await.expect("commit");
    Ok(())
}

both_backends!(
    a_batch_moves_the_checkpoint_on_only_from_where_its_writer_left_it,
    checkpoint_advances
);
async fn checkpoint_advances(backend: Backend) {
    let db = Db::on(backend).await;
    let scope = Scope {
        chain_id: 8453,
        contract: wallet(0xcc),
    };
    let stored = || async {
        let mut conn = db.store.conn().await.expect("a connection");
        checkpoint::read(&mut conn.conn(), &scope)
            .await
            .expect("checkpoint")
            .map(|c| c.number)
    };
    advance(&db, &scope, None, 10)
        .await
        .expect("a first batch sets it");
    advance(&db, &scope, Some(block(10)), 12)
        .await
        .expect("on from where it was");
    assert_eq!(stored().await, Some(12));

    // The database loses that commit (a failover to a replica that was
    // behind): the stored checkpoint is back at 10.
    let mut tx = db.store.begin().await.expect("begin");
    checkpoint::set(&mut tx.conn(), &scope, &block(10))
        .await
        .expect("set");
    tx.commit().await.expect("commit");
    let refused = advance(&db, &scope, Some(block(12)), 14).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::CheckpointMoved {
                expected: 12,
                found: Some(10)
            })
        ),
        "{refused:?}"
    );
    assert_eq!(stored().await, Some(10), "nothing moved");
    // The same number under another hash is another block: refused too.
    let other = BlockRef {
        number: 10,
        hash: B256::repeat_byte(0xee),
    };
    assert!(matches!(
        advance(&db, &scope, Some(other), 11).await,
        Err(StoreError::CheckpointMoved { .. })
    ));
    advance(&db, &scope, Some(block(10)), 11)
        .await
        .expect("on from the stored checkpoint");
    assert_eq!(stored().await, Some(11));
}
