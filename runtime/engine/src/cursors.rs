//! Where each WAL trigger is in the WAL: the sequence of the last flush its plugin has
//! finished with, kept in a file of its own so that a restart resumes from it.
//!
//! The file is rewritten whole (a temporary file, synced, renamed over it) at most every
//! [`SAVE_DELAY`] while cursors move, so a crash may lose the last moves: the flushes
//! after the saved cursor are delivered again. Delivery is at least once: the WAL keeps
//! every flush after the saved cursor as well as after the one in memory
//! ([`Cursors::oldest_needed`]).

use serde::{Deserialize, Serialize};
use sluice_catalog::TriggerId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a moved cursor waits before the file is written, so that moves in a burst
/// cost one write.
const SAVE_DELAY: Duration = Duration::from_millis(100);

/// The cursors' file format.
const VERSION: u32 = 1;

/// One WAL trigger's place in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sequence of the last flush the trigger has finished with.
    pub sequence: u64,
    /// Left on a failed flush by `error_behavior` disable: kept while the trigger is
    /// disabled, so that enabling it delivers that flush again.
    pub held: bool,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    cursors: BTreeMap<TriggerId, Cursor>,
}

/// The cursors of a server's WAL triggers.
pub struct Cursors {
    /// Where they are saved; `None`: kept in memory only.
    path: Option<PathBuf>,
    cursors: Mutex<BTreeMap<TriggerId, Cursor>>,
    /// The cursors as last saved; held while saving, so that saves never overlap.
    saved: Mutex<BTreeMap<TriggerId, Cursor>>,
    moved: Notify,
}

impl Cursors {
    /// Cursors kept in memory only (tests, benchmarks).
    pub fn in_memory() -> Arc<Self> {
        Arc::new(Self {
            path: None,
            cursors: Mutex::default(),
            saved: Mutex::default(),
            moved: Notify::new(),
        })
    }

    /// The cursors saved at `path` (none if there is no file), saved there as they move
    /// from now on. A file that cannot be read is set aside (renamed with `.unreadable`)
    /// and named in the error it returns beside the empty cursors: its triggers start
    /// at the WAL's head. Needs a Tokio runtime.
    pub fn open(path: PathBuf) -> (Arc<Self>, Option<String>) {
        let (cursors, problem) = match load(&path) {
            Ok(cursors) => (cursors, None),
            Err(why) => {
                let aside = path.with_extension("unreadable");
                let kept = std::fs::rename(&path, &aside)
                    .map(|()| format!("set aside as {}", aside.display()))
                    .unwrap_or_else(|e| format!("could not be set aside: {e}"));
                let problem = format!(
                    "the WAL triggers' cursors in {} cannot be read ({why}); {kept}; WAL \
                     triggers start at the WAL's head",
                    path.display()
                );
                (BTreeMap::new(), Some(problem))
            }
        };
        let this = Arc::new(Self {
            path: Some(path),
            saved: Mutex::new(cursors.clone()),
            cursors: Mutex::new(cursors),
            moved: Notify::new(),
        });
        tokio::spawn(save_as_moved(Arc::downgrade(&this)));
        (this, problem)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<TriggerId, Cursor>> {
        self.cursors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cursor of `trigger`, if it has one.
    pub fn get(&self, trigger: TriggerId) -> Option<Cursor> {
        self.lock().get(&trigger).copied()
    }

    /// Sets the cursor of `trigger`.
    pub fn set(&self, trigger: TriggerId, cursor: Cursor) {
        let previous = self.lock().insert(trigger, cursor);
        if previous != Some(cursor) {
            self.moved.notify_one();
        }
    }

    /// Moves the cursor of `trigger` to `sequence`, held or not as it was; nothing if
    /// it has none (its trigger was stopped and its cursor dropped meanwhile).
    pub fn advance(&self, trigger: TriggerId, sequence: u64) {
        if let Some(cursor) = self.lock().get_mut(&trigger)
            && cursor.sequence != sequence
        {
            cursor.sequence = sequence;
            self.moved.notify_one();
        }
    }

    /// Holds the cursor of `trigger` where it is (see [`Cursor::held`]).
    pub fn hold(&self, trigger: TriggerId) {
        if let Some(cursor) = self.lock().get_mut(&trigger) {
            cursor.held = true;
            self.moved.notify_one();
        }
    }

    /// Keeps only the cursors `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(TriggerId, &Cursor) -> bool) {
        let mut cursors = self.lock();
        let before = cursors.len();
        cursors.retain(|trigger, cursor| keep(*trigger, cursor));
        if cursors.len() != before {
            self.moved.notify_one();
        }
    }

    /// The first sequence some cursor has not finished with, as it is or as last saved:
    /// after a crash, a trigger resumes from the saved one.
    pub fn oldest_needed(&self) -> Option<u64> {
        let current = self.lock().values().map(|cursor| cursor.sequence).min();
        let saved = self
            .saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|cursor| cursor.sequence)
            .min();
        let oldest = match (current, saved) {
            (Some(current), Some(saved)) => current.min(saved),
            (current, saved) => current.or(saved)?,
        };
        Some(oldest.saturating_add(1))
    }

    /// Writes the cursors to their file now, on this thread: a trigger's first cursor is
    /// durable before its creation is answered, so that every flush after it is
    /// delivered, a crash or not.
    pub fn save_now(&self) {
        if let Err(e) = self.save() {
            tracing::error!(
                "cannot save the WAL triggers' cursors (tried again at the next move): {e}"
            );
        }
    }

    /// Writes the cursors to their file.
    fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // One save at a time: they share the temporary file.
        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        let file = File {
            version: VERSION,
            cursors: self.lock().clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        let temporary = path.with_extension("tmp");
        {
            let mut out = std::fs::File::create(&temporary)?;
            std::io::Write::write_all(&mut out, &bytes)?;
            out.sync_all()?;
        }
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        *saved = file.cursors;
        Ok(())
    }
}

/// The cursors in `path`; none when there is no file.
fn load(path: &Path) -> Result<BTreeMap<TriggerId, Cursor>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.to_string()),
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!("unknown version {}", file.version));
    }
    Ok(file.cursors)
}

/// Saves `cursors` a little after each move, until they are dropped.
async fn save_as_moved(cursors: Weak<Cursors>) {
    loop {
        let Some(notified) = cursors
            .upgrade()
            .map(|c| async move { c.moved.notified().await })
        else {
            return;
        };
        notified.await;
        tokio::time::sleep(SAVE_DELAY).await;
        let Some(cursors) = cursors.upgrade() else {
            return;
        };
        let saved = {
            let cursors = Arc::clone(&cursors);
            tokio::task::spawn_blocking(move || cursors.save()).await
        };
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(
                    "cannot save the WAL triggers' cursors (tried again at the next move): {e}"
                );
            }
            Err(e) => tracing::error!("cannot save the WAL triggers' cursors: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sequence: u64) -> Cursor {
        Cursor {
            sequence,
            held: false,
        }
    }

    async fn saved(path: &Path, expected: &BTreeMap<TriggerId, Cursor>) {
        for _ in 0..200 {
            if load(path).ok().as_ref() == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never saved: {:?}", load(path));
    }

    #[tokio::test]
    async fn cursors_are_saved_as_they_move_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cursors.json");
        let (cursors, problem) = Cursors::open(path.clone());
        assert_eq!(problem, None, "no file is no problem");
        assert_eq!(cursors.oldest_needed(), None);
        cursors.set(TriggerId::new(1), at(5));
        cursors.set(TriggerId::new(2), at(3));
        assert_eq!(cursors.oldest_needed(), Some(4));
        let expected = BTreeMap::from([(TriggerId::new(1), at(5)), (TriggerId::new(2), at(3))]);
        saved(&path, &expected).await;

        cursors.retain(|trigger, _| trigger == TriggerId::new(1));
        saved(&path, &BTreeMap::from([(TriggerId::new(1), at(5))])).await;
        drop(cursors);
        let (reopened, _) = Cursors::open(path);
        assert_eq!(reopened.get(TriggerId::new(1)), Some(at(5)));
        assert_eq!(reopened.get(TriggerId::new(2)), None);
    }

    #[tokio::test]
    async fn saves_from_many_threads_never_overlap_and_the_last_one_holds_the_newest() {
        // A trigger's first cursor is saved on the thread that creates it while the
        // saver saves moves: saves that overlapped would rename one another's temporary
        // file, fail, or leave an older state last.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cursors.json");
        let (cursors, _) = Cursors::open(path.clone());
        let saves: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (1..=4_u32)
                .map(|thread| {
                    let cursors = &cursors;
                    scope.spawn(move || {
                        (1..=100_u64)
                            .map(|sequence| {
                                cursors.set(TriggerId::new(thread), at(sequence));
                                cursors.save()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("saver"))
                .collect()
        });
        let failed: Vec<_> = saves.iter().filter_map(|s| s.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} of 400 saves failed, the first: {:?}",
            failed.len(),
            failed.first()
        );
        let newest: BTreeMap<_, _> = (1..=4).map(|t| (TriggerId::new(t), at(100))).collect();
        assert_eq!(load(&path).expect("readable"), newest);
        assert_eq!(cursors.oldest_needed(), Some(101));
    }

    #[tokio::test]
    async fn an_unreadable_file_is_set_aside_and_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cursors.json");
        std::fs::write(&path, b"{\"version\": 1, \"cursors\": {\"1\": ").expect("written");
        let (cursors, problem) = Cursors::open(path.clone());
        let problem = problem.expect("named");
        assert!(problem.contains("cannot be read"), "{problem}");
        assert!(problem.contains("start at the WAL's head"), "{problem}");
        assert_eq!(cursors.get(TriggerId::new(1)), None);
        assert!(path.with_extension("unreadable").exists());
        assert!(!path.exists());
    }
}
