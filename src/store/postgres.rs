//! PostgreSQL: the embedded migration set (`migrations/postgres/`, the same
//! database contract as `migrations/sqlite/`) and how it is applied. The
//! PostgreSQL write path behind [`super::Store`] is not built yet; `database.url`
//! accepts SQLite URLs only.

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use super::StoreError;

/// The migrations in `migrations/postgres/`, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The transaction-scoped advisory lock every migration run holds, so that
/// two replicas starting at once apply each migration once ("liqpass" + 1).
const MIGRATION_LOCK: i64 = 0x6c69_7170_6173_7301;

/// Applies every pending migration in one transaction holding
/// `pg_advisory_xact_lock` (released at commit, so it works behind a
/// transaction-pooling PgBouncer); a replica that waited finds nothing left
/// to do.
pub async fn migrate(conn: &mut PgConnection) -> Result<(), StoreError> {
    let mut tx = locked(conn).await?;
    MIGRATOR.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Reverts the most recently applied migration, under the same lock;
/// returns its version, or `None` when nothing was applied.
pub async fn revert_last(conn: &mut PgConnection) -> Result<Option<i64>, StoreError> {
    let mut tx = locked(conn).await?;
    let applied: Vec<i64> =
        if sqlx::query_scalar::<_, bool>("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?
        {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
    let Some(&last) = applied.last() else {
        return Ok(None);
    };
    let target = applied.iter().rev().nth(1).copied().unwrap_or(0);
    MIGRATOR.undo(&mut *tx, target).await?;
    tx.commit().await?;
    Ok(Some(last))
}

/// A transaction holding the migration lock until it ends.
async fn locked(
    conn: &mut PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, StoreError> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
