//! Why a write failed, in the words an operator acts on: the causes
//! (`domain::WriteFailure`, each with its metric label) a [`StoreError`]
//! is classified into, and the sentence `/readyz` shows. Pure: decides
//! nothing about retrying.

use super::StoreError;
pub use crate::domain::WriteFailure;

impl WriteFailure {
    /// Classifies `error` by SQLite's primary result code.
    pub fn of(error: &StoreError) -> Self {
        match error {
            StoreError::Sql(e) | StoreError::Open { cause: e, .. } => Self::of_sql(e),
            StoreError::Connection(_) => Self::Unreachable,
            _ => Self::Other,
        }
    }

    /// Classifies a driver error by SQLite's primary result code, or
    /// PostgreSQL's SQLSTATE.
    pub fn of_sql(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => Self::PoolTimeout,
            sqlx::Error::Io(_) => Self::Io,
            sqlx::Error::Database(db)
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some() =>
            {
                Self::of_sqlstate(db.code().as_deref().unwrap_or(""))
            }
            sqlx::Error::Database(db) => {
                let code = db.code().and_then(|c| c.parse::<i32>().ok());
                // Extended result codes keep the primary code in the low byte.
                match code.map(|c| c & 0xff) {
                    Some(13) => Self::DiskFull,
                    Some(10) => Self::Io,
                    Some(8) => Self::ReadOnly,
                    Some(5 | 6) => Self::LockWait,
                    Some(11 | 26) => Self::Corrupt,
                    Some(14) => Self::CantOpen,
                    _ => Self::Other,
                }
            }
            _ => Self::Other,
        }
    }

    /// Classifies a PostgreSQL SQLSTATE: the same causes in the server's
    /// words, and a lost or ended connection as [`Self::Unreachable`].
    fn of_sqlstate(code: &str) -> Self {
        match code {
            "53100" => Self::DiskFull,
            "58030" => Self::Io,
            "25P03" | "57P01" => Self::SessionTerminated,
            c if c.starts_with("08") || c.starts_with("57P") => Self::Unreachable,
            "25006" => Self::ReadOnly,
            "55P03" => Self::LockWait,
            "40001" | "40P01" => Self::Conflict,
            "57014" => Self::StatementTimeout,
            "XX001" | "XX002" => Self::Corrupt,
            "3D000" | "28000" | "28P01" => Self::CantOpen,
            _ => Self::Other,
        }
    }

    /// What `/readyz` says after "database writes failing: ": a short
    /// cause (the driver's own text goes to the log, with the error).
    pub fn describe(self) -> &'static str {
        match self {
            Self::DiskFull => "database or disk is full",
            Self::Io => "disk I/O error",
            Self::ReadOnly => "the database is read-only",
            Self::LockWait => "waiting on a lock held by another session, past the wait's bound",
            Self::Conflict => "a serialization failure or deadlock (run again)",
            Self::StatementTimeout => "a statement ran past its timeout",
            Self::SessionTerminated => "the server ended the session",
            Self::Corrupt => "database disk image is malformed",
            Self::CantOpen => "unable to open the database file",
            Self::PoolTimeout => "no database connection became free in time",
            Self::Unreachable => "the database server ended or refused the connection",
            Self::Other => "an unclassified database error (see the log)",
        }
    }

    /// True when the connection that failed may be left unusable: SQLite
    /// rolls a transaction back by itself after some of these, and the
    /// driver, which still counts it open, would refuse the next `BEGIN`.
    pub fn may_poison(self) -> bool {
        !matches!(self, Self::LockWait | Self::PoolTimeout)
    }
}

#[cfg(test)]
#[path = "failure_tests.rs"]
mod tests;
