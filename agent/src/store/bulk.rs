//! A wave's tasks as a table-valued function, `wave_tasks(?)`, so that a new wave's tasks
//! go in with one `INSERT ... SELECT` instead of one statement per task.
//!
//! Why: per task, a prepared insert pays for binding 18 values, a step and a reset from
//! Rust; one `INSERT ... SELECT` runs the whole wave inside SQLite's engine, with each
//! row's secondary index entries written in the same pass (`scripts/bench --only wave`).
//!
//! The function reads the tasks through a pointer bound as its hidden `tasks` argument
//! (SQLite's pointer passing, as in rusqlite's `rarray`), borrowed, not copied. It is
//! eponymous-only: it exists on every connection [`register`] ran on and writes nothing to
//! the file.

use std::borrow::Cow;
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;

use floorhand_protocol::oms::Task;
use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{Connection, Statement, ffi};

use super::codec::encode_gtins;
use super::sql;

/// The function's name and its pointer type (SQLite checks the type on every read).
const NAME: &CStr = c"wave_tasks";

/// The columns, in [`TaskCursor::column`]'s order; `tasks` is the hidden argument.
const SCHEMA: &CStr = c"CREATE TABLE x(task_id, order_id, order_line, location, pick_seq,
    location_check, gtins, sku, description, qty, capture_lot, capture_serial,
    capture_expiry, tote_required, tasks HIDDEN)";

/// The hidden argument's column number.
const TASKS_ARG: c_int = 14;

/// A wave's tasks bound as `wave_tasks(?)`'s argument, borrowed: SQLite gets a pointer
/// with no destructor. Bind it only for one execution that ends while the tasks are
/// borrowed ([`insert`] does exactly that).
struct WaveTasks<'a>(&'a Vec<Task>);

impl ToSql for WaveTasks<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let ptr: *const Vec<Task> = self.0;
        Ok(ToSqlOutput::Pointer((ptr.cast(), NAME, None)))
    }
}

/// Runs `stmt` (an insert reading `wave_tasks(?1)`) once with `tasks` as `?1` and `rest`
/// from `?2` on, and returns the rows it changed. The bindings are cleared before
/// returning, so the statement never keeps the pointer past the borrow.
pub(super) fn insert(
    stmt: &mut Statement<'_>,
    tasks: &Vec<Task>,
    rest: &[&dyn ToSql],
) -> rusqlite::Result<usize> {
    let tasks = WaveTasks(tasks);
    let mut params: Vec<&dyn ToSql> = Vec::with_capacity(rest.len() + 1);
    params.push(&tasks);
    params.extend_from_slice(rest);
    let changed = stmt.execute(params.as_slice());
    stmt.clear_bindings();
    changed
}

/// Makes `wave_tasks` callable on `conn`.
pub(super) fn register(conn: &Connection) -> rusqlite::Result<()> {
    const MODULE: Module<TasksTab> = Module::eponymous_only_module();
    conn.create_module(NAME, &MODULE, None::<()>)
}

/// The virtual table (SQLite's base struct first, as the trait requires).
#[repr(C)]
struct TasksTab {
    base: ffi::sqlite3_vtab,
}

// SAFETY: `TasksTab` is `repr(C)` with `sqlite3_vtab` as its first field, which is what the
// trait's contract asks for; it holds nothing else.
unsafe impl<'vtab> VTab<'vtab> for TasksTab {
    type Aux = ();
    type Cursor = TaskCursor<'vtab>;

    fn connect(
        _: &mut VTabConnection,
        _: Option<&()>,
        _: &[u8],
        _: &[u8],
        _: &[u8],
        _: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        let tab = TasksTab {
            base: ffi::sqlite3_vtab::default(),
        };
        Ok((Cow::Borrowed(SCHEMA), tab))
    }

    /// Usable only with its argument bound; without it the plan is priced out.
    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        let mut bound = false;
        for (constraint, mut usage) in info.constraints_and_usages() {
            if constraint.is_usable()
                && constraint.column() == TASKS_ARG
                && constraint.operator() == IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ
            {
                bound = true;
                usage.set_argv_index(1);
                usage.set_omit(true);
            }
        }
        info.set_idx_num(c_int::from(bound));
        info.set_estimated_cost(if bound { 1.0 } else { f64::MAX });
        Ok(true)
    }

    fn open(&mut self) -> rusqlite::Result<TaskCursor<'_>> {
        Ok(TaskCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            at: 0,
            tasks: &[],
            tab: PhantomData,
        })
    }
}

/// A pass over the bound tasks.
#[repr(C)]
struct TaskCursor<'vtab> {
    base: ffi::sqlite3_vtab_cursor,
    at: usize,
    tasks: &'vtab [Task],
    tab: PhantomData<&'vtab TasksTab>,
}

// SAFETY: `repr(C)` with `sqlite3_vtab_cursor` first, as the trait's contract asks.
unsafe impl VTabCursor for TaskCursor<'_> {
    fn filter(
        &mut self,
        idx_num: c_int,
        _: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        // SAFETY: SQLite hands the pointer back only if it was bound with this same type
        // name, which only `WaveTasks` does, and only [`insert`] binds one: for one
        // execution, within the borrow of the tasks it points to.
        let tasks: Option<&Vec<Task>> = if idx_num == 1 {
            unsafe { args.get_pointer(0, NAME) }
        } else {
            None
        };
        self.tasks = tasks.map_or(&[], Vec::as_slice);
        self.at = 0;
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.at += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.at >= self.tasks.len()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let t = &self.tasks[self.at];
        match i {
            0 => ctx.set_result(sql(t.task_id)),
            1 => ctx.set_result(&t.order_id),
            2 => ctx.set_result(t.order_line),
            3 => ctx.set_result(&t.location),
            4 => ctx.set_result(t.pick_seq),
            5 => ctx.set_result(t.location_check),
            6 => ctx.set_result(encode_gtins(&t.gtins)),
            7 => ctx.set_result(&t.sku),
            8 => ctx.set_result(&t.description),
            9 => ctx.set_result(t.qty),
            10 => ctx.set_result(t.capture.lot),
            11 => ctx.set_result(t.capture.serial),
            12 => ctx.set_result(t.capture.expiry),
            13 => ctx.set_result(t.tote_required),
            _ => Ok(()),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.at as i64)
    }
}
