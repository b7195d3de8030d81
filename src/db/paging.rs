//! Cursor paging of every list (contract §13, issue 16). Beside `offset`, a
//! page may start after (or end before) one of the list's objects; it is cut
//! by that object's sort key rather than by a count, so pages do not shift
//! while rows arrive. Every list is sorted newest first by a key ending in
//! the id, which makes the cut exact.

use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{Encode, PgConnection, Postgres, Type};

/// Where a page starts.
#[derive(Clone, Debug)]
pub enum Cursor<Id> {
    /// Skip this many (the default: 0).
    Offset(i64),
    /// The objects after this one (older).
    StartingAfter(Id),
    /// The objects before this one (newer), still answered newest first.
    EndingBefore(Id),
}

// Not derived: that would ask `Id: Default`.
impl<Id> Default for Cursor<Id> {
    fn default() -> Self {
        Cursor::Offset(0)
    }
}

impl<Id> Cursor<Id> {
    /// The object the page is cut at.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Cursor::Offset(_) => None,
            Cursor::StartingAfter(id) | Cursor::EndingBefore(id) => Some(id),
        }
    }
}

/// A page (in list order), whether more follow in the direction of the
/// page, and the total; `None` when the cursor is not one of the list's.
pub type Page<T> = Option<(Vec<T>, bool, i64)>;

/// Rows of this tenant (`$2` the merchant, `$3` the mode; NULL for an
/// operator) may be a cursor.
pub(super) const BY_TENANT: &str =
    "WHERE ($2::text IS NULL OR k.merchant_id = $2) AND ($3::boolean IS NULL OR k.livemode = $3)";
/// Rows of the parent `$2` (its payment) may be a cursor.
pub(super) const BY_PAYMENT: &str = "WHERE k.payment_id = $2 AND $3::boolean IS NULL";

/// How a list is sorted, and which rows may be its cursor.
pub(super) struct Keyset {
    /// The table the list's objects are rows of.
    pub table: &'static str,
    /// The table's name or alias in the list's query.
    pub alias: &'static str,
    /// The sort key, each column descending; it ends in the id.
    pub key: &'static [&'static str],
    /// Joins and a `WHERE` on row `k` that make it a cursor of this list
    /// (see [`BY_TENANT`]): a cursor is checked against its owner, not the
    /// filters, so a row that stops matching them still pages.
    pub owner: &'static str,
}

impl Keyset {
    /// True when there is no cursor, or it is a row of `owner` (merchant or
    /// parent id) in `livemode`.
    pub(super) async fn admits<Id>(
        &self,
        conn: &mut PgConnection,
        cursor: &Cursor<Id>,
        owner: Option<&str>,
        livemode: Option<bool>,
    ) -> Result<bool, sqlx::Error>
    where
        for<'q> &'q Id: Encode<'q, Postgres> + Type<Postgres>,
        Id: Sync,
    {
        let Some(id) = cursor.id() else { return Ok(true) };
        let (table, owned) = (self.table, self.owner);
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {table} k {owned} AND k.id = $1)"
        )))
        .bind(id)
        .bind(owner)
        .bind(livemode)
        .fetch_one(conn)
        .await
    }

    /// What follows the list's `WHERE` filters: the cut at the cursor, the
    /// order, `LIMIT $n OFFSET $n+1` and the cursor's id at `$n+2` (bound by
    /// [`bind`]). Before a cursor the rows are read oldest first (the ones
    /// next to it), and [`finish`] turns them around.
    pub(super) fn tail<Id>(&self, cursor: &Cursor<Id>, n: usize) -> String {
        let (cut, order) = match cursor {
            Cursor::Offset(_) => (None, "DESC"),
            Cursor::StartingAfter(_) => (Some("<"), "DESC"),
            Cursor::EndingBefore(_) => (Some(">"), "ASC"),
        };
        let ours = self.key.iter().map(|c| format!("{}.{c}", self.alias)).collect::<Vec<_>>();
        let theirs = self.key.iter().map(|c| format!("k.{c}")).collect::<Vec<_>>();
        let cut = cut.map_or(String::new(), |op| {
            format!(
                "AND ({}) {op} (SELECT {} FROM {} k WHERE k.id = ${})",
                ours.join(", "),
                theirs.join(", "),
                self.table,
                n + 2
            )
        });
        let order = ours.iter().map(|c| format!("{c} {order}")).collect::<Vec<_>>().join(", ");
        format!("{cut} ORDER BY {order} LIMIT ${n} OFFSET ${}", n + 1)
    }
}

/// Binds what [`Keyset::tail`] refers to: one row more than `limit` (to
/// tell whether more follow), the offset, the cursor's id.
pub(super) fn bind<'q, O, Id>(
    q: QueryAs<'q, Postgres, O, PgArguments>,
    cursor: &'q Cursor<Id>,
    limit: i64,
) -> QueryAs<'q, Postgres, O, PgArguments>
where
    &'q Id: Encode<'q, Postgres> + Type<Postgres>,
{
    let offset = match cursor {
        Cursor::Offset(n) => *n,
        _ => 0,
    };
    q.bind(limit + 1).bind(offset).bind(cursor.id())
}

/// The page in list order (newest first), and whether more follow.
pub(super) fn finish<T, Id>(mut rows: Vec<T>, cursor: &Cursor<Id>, limit: i64) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    if matches!(cursor, Cursor::EndingBefore(_)) {
        rows.reverse();
    }
    (rows, more)
}
