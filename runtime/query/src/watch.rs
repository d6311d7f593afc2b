//! The last guard against a query exhausting the machine: the server's resident memory.
//!
//! The memory pool sees what operators reserve, and [`functions`](crate::functions)
//! bound what a function call builds, but some operators hold rows without reserving
//! (a window over a whole input buffers it all). So a thread samples the process's
//! resident memory every [`SAMPLE_EVERY`], and every source of rows in a plan (each leaf:
//! a table's scan, `generate_series`, `VALUES`) is wrapped, by a physical-optimizer rule
//! that runs after all the others ([`WatchLeaves`]), in [`WatchedExec`], which refuses to
//! produce another batch while the process is over its bound. Whatever a query holds
//! then goes with the failed query. The bound is [`QueryLimits::process_memory_bytes`]
//! (crate::QueryLimits).

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::Stream;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

/// How often the resident memory is read.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The process's resident memory at the last sample, in bytes; 0 until the first.
pub(crate) static RESIDENT: AtomicU64 = AtomicU64::new(0);

/// Starts the sampling thread, once per process.
fn start_sampling() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("sluice-memory-watch".into())
            .spawn(|| {
                loop {
                    if let Some(bytes) = resident_bytes() {
                        RESIDENT.store(bytes, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(
                "cannot watch the server's memory; queries are bounded by their pools only: {error}"
            );
        }
    });
}

/// The resident memory of this process (Linux's `/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(4096))
}

/// The default bound: four fifths of the machine's memory, or of the control group's when
/// it has less; `u64::MAX` (no bound) when neither can be read.
pub fn default_process_bound() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let kib = info
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(kib.saturating_mul(1024))
        });
    let group = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|max| max.trim().parse::<u64>().ok());
    match (machine, group) {
        (Some(a), Some(b)) => a.min(b) / 5 * 4,
        (Some(bytes), None) | (None, Some(bytes)) => bytes / 5 * 4,
        (None, None) => u64::MAX,
    }
}

/// The bound leaves check, shared by every session of an engine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    limit: u64,
}

impl Watch {
    /// A watch of the process against `limit` bytes; starts sampling if it must.
    pub(crate) fn new(limit: u64) -> Self {
        if limit < u64::MAX {
            start_sampling();
        }
        Self { limit }
    }

    fn check(&self) -> Result<()> {
        let resident = RESIDENT.load(Ordering::Relaxed);
        if resident > self.limit {
            return Err(DataFusionError::External(Box::new(ShortOfMemory {
                resident,
                limit: self.limit,
            })));
        }
        Ok(())
    }
}

/// The process is over its bound.
#[derive(Debug)]
pub(crate) struct ShortOfMemory {
    resident: u64,
    limit: u64,
}

impl fmt::Display for ShortOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server is short of memory ({} MiB resident, over its {} MiB for queries to \
             go on); try again later",
            self.resident >> 20,
            self.limit >> 20
        )
    }
}

impl std::error::Error for ShortOfMemory {}

/// Wraps every leaf of a plan in [`WatchedExec`]; runs after every other rule, so that
/// the wrapper stands in the way of no optimisation.
#[derive(Debug)]
pub(crate) struct WatchLeaves(pub(crate) Watch);

impl PhysicalOptimizerRule for WatchLeaves {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let watch = self.0;
        plan.transform_up(|node| {
            if !node.children().is_empty() || node.is::<WatchedExec>() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(WatchedExec {
                inner: node,
                watch,
            })))
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "watch_leaves"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A source of rows that produces no batch while the process is over its bound.
#[derive(Debug)]
pub(crate) struct WatchedExec {
    inner: Arc<dyn ExecutionPlan>,
    watch: Watch,
}

impl DisplayAs for WatchedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WatchedExec")
    }
}

impl ExecutionPlan for WatchedExec {
    fn name(&self) -> &str {
        "WatchedExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(inner), true) => Ok(Arc::new(Self {
                inner,
                watch: self.watch,
            })),
            _ => Err(DataFusionError::Internal(
                "WatchedExec has exactly one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.watch.check()?;
        Ok(Box::pin(Watched {
            inner: self.inner.execute(partition, context)?,
            watch: self.watch,
        }))
    }
}

/// A leaf's batches, each checked against the watch before it is asked for.
struct Watched {
    inner: SendableRecordBatchStream,
    watch: Watch,
}

impl Stream for Watched {
    type Item = Result<datafusion::arrow::record_batch::RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Err(error) = self.watch.check() {
            return Poll::Ready(Some(Err(error)));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for Watched {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}
