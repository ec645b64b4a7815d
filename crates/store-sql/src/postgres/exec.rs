//! Where PostgreSQL statements run: straight on the pool, or — behind a
//! transaction pooler such as pgbouncer 1.18 in `pool_mode = transaction` —
//! each statement in a transaction of its own, as an unnamed statement.
//!
//! A transaction pooler lends a server connection for one transaction only.
//! sqlx parses a statement and executes it in two exchanges; outside a
//! transaction the pooler may hand the second to another server, which has
//! no such statement (named ones collide between clients as well). Inside
//! an explicit transaction both exchanges reach the same server, and an
//! unnamed statement leaves nothing behind for the next client.

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres};
use sqlx::{Either, Error, Execute, Executor, PgConnection, PgPool};

/// The pool, and whether statements must go through a transaction pooler.
#[derive(Clone, Debug)]
pub struct PgExec {
    pub pool: PgPool,
    /// Behind a transaction pooler: a transaction per statement, no named
    /// statements.
    pub pooled: bool,
}

/// A query whose statement is unnamed when `named` is false.
struct Named<E> {
    inner: E,
    named: bool,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Named<E> {
    fn sql(&self) -> &'q str {
        self.inner.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.inner.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.inner.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.named && self.inner.persistent()
    }
}

impl<'c> Executor<'c> for &'c PgExec {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return self.pool.fetch_many(query);
        }
        let pool = self.pool.clone();
        // Read to the end inside the transaction, then hand the rows on.
        let all = async move {
            let mut tx = pool.begin().await?;
            let items: Vec<_> = tx
                .fetch_many(Named {
                    inner: query,
                    named: false,
                })
                .try_collect()
                .await?;
            tx.commit().await?;
            Ok::<_, Error>(stream::iter(items.into_iter().map(Ok)))
        };
        stream::once(all).try_flatten().boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.pooled {
            return self.pool.fetch_optional(query);
        }
        let pool = self.pool.clone();
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = tx
                .fetch_optional(Named {
                    inner: query,
                    named: false,
                })
                .await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}

/// A connection inside a transaction weir opened (a `DriverTx`): statements
/// are unnamed when `named` is false.
#[derive(Debug)]
pub struct TxExec<'a> {
    pub conn: &'a mut PgConnection,
    pub named: bool,
}

impl<'c> Executor<'c> for TxExec<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        self.conn.fetch_many(Named {
            inner: query,
            named: self.named,
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        self.conn.fetch_optional(Named {
            inner: query,
            named: self.named,
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, Error>>
    where
        'c: 'e,
    {
        self.conn.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, Error>>
    where
        'c: 'e,
    {
        self.conn.describe(sql)
    }
}
