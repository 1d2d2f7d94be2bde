//! One connection API over the store's two engines, SQLite (rusqlite) and
//! PostgreSQL (the blocking `postgres` client), shaped like rusqlite's so the
//! store's queries are written once: `prepare_cached(sql)?.query_row(params, |r|
//! r.get(0))`. Statements use SQLite's numbered placeholders (`?1`); for
//! PostgreSQL they are rewritten to `$1` once per statement and the prepared
//! statement is cached per connection.
//!
//! Values cross as what both engines store: 64-bit integers, text, bytes (BLOB,
//! BYTEA) and booleans (SQLite keeps booleans as 0/1). Reading goes through [`Value`], so a column
//! PostgreSQL types as `integer` (e.g. `length()`) reads as `i64` like SQLite's.
//!
//! Every call blocks: the store runs on blocking threads, never on the async
//! workers (the portal and the QUIC endpoint call it through `spawn_blocking`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A value bound to a statement: anything both engines take.
pub trait Arg: rusqlite::ToSql + postgres::types::ToSql + Sync {
    fn lite(&self) -> &dyn rusqlite::ToSql;
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync);
}

impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> Arg for T {
    fn lite(&self) -> &dyn rusqlite::ToSql {
        self
    }
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
        self
    }
}

/// The arguments of one statement: `[]`, an array of one type, or
/// [`params!`](crate::params) for mixed types.
pub trait Params {
    fn args(&self) -> Vec<&dyn Arg>;
}

impl Params for &[&dyn Arg] {
    fn args(&self) -> Vec<&dyn Arg> {
        self.to_vec()
    }
}

impl Params for [&dyn Arg; 0] {
    fn args(&self) -> Vec<&dyn Arg> {
        vec![]
    }
}

macro_rules! array_params {
    ($($n:literal)+) => {$(
        impl<T: Arg> Params for [T; $n] {
            fn args(&self) -> Vec<&dyn Arg> {
                self.iter().map(|a| a as &dyn Arg).collect()
            }
        }
    )+};
}
array_params!(1 2 3 4 5 6 7 8 9 10 11 12);

/// Mixed-type arguments: `params![number, serial, true]`.
#[macro_export]
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn $crate::store::db::Arg),*] as &[&dyn $crate::store::db::Arg]
    };
}

/// A failed statement.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Pg(#[from] postgres::Error),
    #[error("the query returned no rows")]
    NoRows,
    /// A read declared as one statement ([`Conn::read_one`]) ran a second one.
    #[error("a second statement in a read of one statement")]
    NotOneStatement,
    #[error("column {column}: {reason}")]
    Column { column: usize, reason: String },
    /// A record a migration re-encodes does not decode.
    #[error("the record of {what} does not decode: {reason}")]
    Record { what: String, reason: String },
}

impl DbError {
    /// The SQLSTATE of a PostgreSQL error.
    pub fn pg_code(&self) -> Option<&str> {
        match self {
            DbError::Pg(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }
}

/// `query_row(..).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows | DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// A column's value as both engines give it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl Value {
    fn from_lite(v: rusqlite::types::ValueRef<'_>) -> Result<Value, String> {
        use rusqlite::types::ValueRef;
        Ok(match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(
                std::str::from_utf8(t)
                    .map_err(|e| e.to_string())?
                    .to_owned(),
            ),
            ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        })
    }
}

impl<'a> postgres::types::FromSql<'a> for Value {
    fn from_sql(
        ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Bytes(raw.to_vec()),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }
    fn from_sql_null(
        _: &postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }
    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BYTEA
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(t) => ValueRef::Text(t.as_bytes()),
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Int(i), _) => i.to_sql(ty, out),
            (Value::Real(f), _) => f.to_sql(ty, out),
            (Value::Text(t), _) => t.to_sql(ty, out),
            (Value::Bool(b), _) => b.to_sql(ty, out),
            (Value::Bytes(b), _) => b.to_sql(ty, out),
        }
    }
    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

/// A type a column can be read as.
pub trait FromCol: Sized {
    fn from_value(v: Value) -> Result<Self, String>;
}

impl FromCol for Value {
    fn from_value(v: Value) -> Result<Self, String> {
        Ok(v)
    }
}
impl FromCol for i64 {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            Value::Bool(b) => Ok(i64::from(b)),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
impl FromCol for bool {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Bool(b) => Ok(b),
            Value::Int(i) => Ok(i != 0),
            other => Err(format!("expected a boolean, found {other:?}")),
        }
    }
}
impl FromCol for String {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Text(t) => Ok(t),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromCol for Vec<u8> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromCol> FromCol for Option<T> {
    fn from_value(v: Value) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A column index (`r.get(0)`).
pub trait ColIndex {
    fn index(self) -> usize;
}
impl ColIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row.
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Row")
    }
}

impl std::fmt::Debug for Stmt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stmt")
    }
}

impl Row<'_> {
    pub fn get<I: ColIndex, T: FromCol>(&self, idx: I) -> Result<T, DbError> {
        let column = idx.index();
        let value = match self {
            Row::Sqlite(r) => Value::from_lite(r.get_ref(column)?)
                .map_err(|reason| DbError::Column { column, reason })?,
            Row::Pg(r) => r.try_get::<_, Value>(column)?,
        };
        T::from_value(value).map_err(|reason| DbError::Column { column, reason })
    }

    /// How many columns the row has.
    pub fn len(&self) -> usize {
        match self {
            Row::Sqlite(r) => r.as_ref().column_count(),
            Row::Pg(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A PostgreSQL connection with its own statement cache (the blocking client
/// prepares each text again otherwise: a round trip per statement).
pub struct PgConn {
    /// Always `Some` until the connection is dropped.
    client: RefCell<Option<postgres::Client>>,
    cache: RefCell<HashMap<String, postgres::Statement>>,
    /// In a read of one statement ([`Conn::read_one`]): whether it ran.
    one_statement: Cell<Option<bool>>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgConn")
    }
}

impl PgConn {
    pub fn connect(url: &str) -> Result<PgConn, DbError> {
        let client = postgres::Client::connect(url, postgres::NoTls)?;
        Ok(PgConn {
            client: RefCell::new(Some(client)),
            cache: RefCell::new(HashMap::new()),
            one_statement: Cell::new(None),
        })
    }

    /// Whether the connection to the server was lost (the next use reconnects).
    pub fn is_closed(&self) -> bool {
        self.client
            .borrow()
            .as_ref()
            .is_none_or(postgres::Client::is_closed)
    }

    /// Runs `f` on the client.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let mut client = self.client.borrow_mut();
        let client = client.as_mut().ok_or(DbError::NoRows)?;
        Ok(f(client)?)
    }

    /// Runs one statement on the client: the second one of a read of one
    /// statement is refused ([`DbError::NotOneStatement`]).
    fn run<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        match self.one_statement.get() {
            Some(true) => return Err(DbError::NotOneStatement),
            Some(false) => self.one_statement.set(Some(true)),
            None => {}
        }
        self.with(f)
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(s) = self.cache.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.with(|c| c.prepare(&pg_placeholders(sql)))?;
        self.cache.borrow_mut().insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }
}

impl Drop for PgConn {
    /// The blocking client closes its connection with a blocking call, which
    /// must not run on an async worker (a store dropped at the end of an async
    /// task): there, it is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(client));
            }
        }
    }
}

/// `?1` → `$1`, outside quoted text.
pub fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

/// A connection of either engine.
#[derive(Debug)]
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<PgConn>),
}

/// A prepared statement.
pub enum Stmt<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Pg {
        conn: &'c PgConn,
        stmt: postgres::Statement,
    },
}

/// PostgreSQL advisory lock keys of `pls` (one number space per database).
/// Schema migrations: one instance at a time.
pub const MIGRATION_LOCK: i64 = 7_407_140;
/// Every write transaction: the writers of all instances take turns.
pub const WRITE_LOCK: i64 = 7_407_141;
/// Housekeeping (quote expiry, reminders): one instance at a time.
pub const HOUSEKEEPING_LOCK: i64 = 7_407_142;

/// A PostgreSQL write transaction starts by taking [`WRITE_LOCK`] (one round trip).
const PG_BEGIN_WRITE: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(7407141)";

impl Conn {
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'_>, DbError> {
        Ok(match self {
            Conn::Sqlite(c) => Stmt::Sqlite(c.prepare_cached(sql)?),
            Conn::Pg(c) => Stmt::Pg {
                conn: c,
                stmt: c.statement(sql)?,
            },
        })
    }

    /// Same as [`Conn::prepare_cached`]: both engines cache every statement.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>, DbError> {
        self.prepare_cached(sql)
    }

    pub fn execute(&self, sql: &str, p: impl Params) -> Result<usize, DbError> {
        self.prepare_cached(sql)?.execute(p)
    }

    pub fn query_row<T>(
        &self,
        sql: &str,
        p: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.prepare_cached(sql)?.query_row(p, f)
    }

    /// Statements without arguments, separated by `;`.
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql)?,
            Conn::Pg(c) => c.run(|c| c.batch_execute(sql))?,
        }
        Ok(())
    }

    /// Runs `f` only if no other connection to the database runs it under the
    /// same `key` at this moment; `None` when another one does. PostgreSQL: a
    /// session advisory lock, so of several `pls` one does the work (housekeeping).
    /// SQLite has one server per file: `f` always runs.
    pub fn exclusively<A>(&self, key: i64, f: impl FnOnce() -> A) -> Result<Option<A>, DbError> {
        if self.is_sqlite() {
            return Ok(Some(f()));
        }
        let got: bool = self.query_row("SELECT pg_try_advisory_lock(?1)", [key], |r| r.get(0))?;
        if !got {
            return Ok(None);
        }
        let a = f();
        self.query_row("SELECT pg_advisory_unlock(?1)", [key], |r| {
            r.get::<_, bool>(0)
        })?;
        Ok(Some(a))
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self, Conn::Sqlite(_))
    }

    /// Runs `f` in a write transaction: committed when it returns `Ok`, rolled
    /// back otherwise. The write lock is taken at the start, so a write checks
    /// its rules on data nothing else changes: SQLite's `BEGIN IMMEDIATE`, and on
    /// PostgreSQL a transaction-scoped advisory lock ([`WRITE_LOCK`]) that every
    /// `pls` on the database takes. Several servers on one PostgreSQL thus write
    /// one after the other, exactly as one server does; under READ COMMITTED each
    /// statement after the lock sees every write committed before it.
    pub fn write<A, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<A, E>,
    ) -> Result<A, E> {
        let begin = match self {
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
            Conn::Pg(_) => PG_BEGIN_WRITE,
        };
        self.execute_batch(begin)?;
        match f(self) {
            Ok(a) => {
                if let Err(e) = self.execute_batch("COMMIT") {
                    let _ = self.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                Ok(a)
            }
            Err(e) => {
                let _ = self.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Runs `f` in a read transaction: one consistent snapshot.
    pub fn read<A, E: From<DbError>>(&self, f: impl FnOnce(&Conn) -> Result<A, E>) -> Result<A, E> {
        let begin = match self {
            Conn::Sqlite(_) => "BEGIN DEFERRED",
            Conn::Pg(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        self.execute_batch(begin)?;
        let r = f(self);
        let _ = self.execute_batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" });
        r
    }

    /// Runs `f`, a read of exactly one statement. On PostgreSQL without a
    /// transaction of its own: one statement outside a transaction reads one
    /// snapshot, as [`Conn::read`]'s transaction would, and BEGIN and COMMIT
    /// would be two more round trips to the server. A second statement in `f`
    /// fails with [`DbError::NotOneStatement`], so a read that grows one fails
    /// its PostgreSQL tests instead of reading two snapshots. SQLite: as
    /// [`Conn::read`] (its BEGIN and COMMIT are calls in this process).
    pub fn read_one<A, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Conn) -> Result<A, E>,
    ) -> Result<A, E> {
        let Conn::Pg(pg) = self else {
            return self.read(f);
        };
        pg.one_statement.set(Some(false));
        let r = f(self);
        pg.one_statement.set(None);
        r
    }
}

impl Stmt<'_> {
    pub fn execute(&mut self, p: impl Params) -> Result<usize, DbError> {
        let args = p.args();
        match self {
            Stmt::Sqlite(s) => {
                let lite: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.lite()).collect();
                Ok(s.execute(lite.as_slice())?)
            }
            Stmt::Pg { conn, stmt } => {
                let pg: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a.pg()).collect();
                let n = conn.run(|c| c.execute(&*stmt, &pg))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    pub fn query_row<T>(
        &mut self,
        p: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let args = p.args();
        match self {
            Stmt::Sqlite(s) => {
                let lite: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.lite()).collect();
                let mut rows = s.query(lite.as_slice())?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)),
                    None => Err(DbError::NoRows),
                }
            }
            Stmt::Pg { conn, stmt } => {
                let pg: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a.pg()).collect();
                match conn.run(|c| c.query_opt(&*stmt, &pg))? {
                    Some(r) => f(&Row::Pg(&r)),
                    None => Err(DbError::NoRows),
                }
            }
        }
    }

    /// Every row through `f`, collected (the store's result sets are pages or
    /// small).
    pub fn query_map<T>(
        &mut self,
        p: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<std::vec::IntoIter<Result<T, DbError>>, DbError> {
        let args = p.args();
        let mut out = vec![];
        match self {
            Stmt::Sqlite(s) => {
                let lite: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.lite()).collect();
                let mut rows = s.query(lite.as_slice())?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r)));
                }
            }
            Stmt::Pg { conn, stmt } => {
                let pg: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    args.iter().map(|a| a.pg()).collect();
                for r in conn.run(|c| c.query(&*stmt, &pg))? {
                    out.push(f(&Row::Pg(&r)));
                }
            }
        }
        Ok(out.into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgresql_write_takes_the_write_lock() {
        let key = WRITE_LOCK.to_string();
        assert!(PG_BEGIN_WRITE.ends_with(&format!("pg_advisory_xact_lock({key})")));
    }

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            pg_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(pg_placeholders("SELECT '?' || ?3"), "SELECT '?' || $3");
    }

    #[test]
    fn sqlite_rows_read_through_values() {
        let c = Conn::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.execute_batch("CREATE TABLE t (a BIGINT, b TEXT, c BOOLEAN)")
            .unwrap();
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            crate::params![7i64, "x", true],
        )
        .unwrap();
        let (a, b, flag): (i64, String, bool) = c
            .query_row("SELECT a, b, c FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((a, b.as_str(), flag), (7, "x", true));
        let none = c
            .query_row("SELECT a FROM t WHERE a = ?1", [8i64], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .unwrap();
        assert_eq!(none, None);
        let wrong = c.query_row("SELECT b FROM t", [], |r| r.get::<_, i64>(0));
        assert!(matches!(wrong, Err(DbError::Column { column: 0, .. })));
    }
}
