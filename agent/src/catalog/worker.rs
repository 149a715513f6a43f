//! The catalog's own thread. The down-sync's CPU work (inflating a page,
//! parsing its JSON, writing it to sled) runs here, at a lower priority
//! than capture, instead of on tokio's workers and blocking pool: a large
//! pull then takes what the tills leave of the store box's cores, and
//! capture keeps its pace while a million SKUs arrive. The agent opens
//! the catalog here too, so that sled's own background threads (its
//! flusher), which inherit their creator's priority, run below capture as
//! well. One thread also keeps the sync's allocations in one malloc arena.

use std::sync::mpsc;

use tokio::sync::oneshot;

/// How much the catalog thread lowers its priority below the agent's
/// (`nice` steps, capped at 19). At +10 the kernel weighs it 110 against
/// 1,024 for a capture thread: about a tenth of a contended core, and all
/// of an idle one.
pub const NICENESS_STEP: i32 = 10;

/// The lowest priority `nice` allows.
const NICEST: i32 = 19;

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The thread could not be started.
    #[error("starting the catalog thread: {0}")]
    Spawn(std::io::Error),
    /// The thread is gone (the agent is stopping).
    #[error("the catalog thread has stopped")]
    Gone,
    /// The job panicked; the thread carries on with the next one.
    #[error("a catalog job panicked")]
    Panicked,
}

type Job = Box<dyn FnOnce() + Send>;

/// Handle to the catalog thread; it stops when the handle is dropped and
/// its queued jobs are done.
#[derive(Debug)]
pub struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread, which lowers its own priority by `step`.
    pub fn start(step: i32) -> Result<Worker, WorkerError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("o2c-catalog".into())
            .spawn(move || {
                lower_priority(step);
                for job in queue {
                    job();
                }
            })
            .map_err(WorkerError::Spawn)?;
        Ok(Worker { jobs })
    }

    /// Runs `f` on the catalog thread and waits for it, blocking: for
    /// start-up, never from an async task.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerError> {
        let (done, answer) = mpsc::sync_channel(1);
        self.submit(f, move |out| {
            let _ = done.send(out);
        })?;
        outcome(answer.recv().ok())
    }

    /// Runs `f` on the catalog thread, after the jobs queued before it.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkerError> {
        let (done, answer) = oneshot::channel();
        self.submit(f, move |out| {
            // The caller may have been cancelled; the work stands anyway.
            let _ = done.send(out);
        })?;
        outcome(answer.await.ok())
    }

    /// Queues `f`, catching a panic, with `reply` for its outcome.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
        reply: impl FnOnce(std::thread::Result<T>) + Send + 'static,
    ) -> Result<(), WorkerError> {
        let job: Job =
            Box::new(move || reply(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))));
        self.jobs.send(job).map_err(|_| WorkerError::Gone)
    }
}

/// A job's answer (`None`: the thread dropped it, so it is gone).
fn outcome<T>(answer: Option<std::thread::Result<T>>) -> Result<T, WorkerError> {
    match answer {
        Some(Ok(value)) => Ok(value),
        Some(Err(_)) => Err(WorkerError::Panicked),
        None => Err(WorkerError::Gone),
    }
}

/// Lowers the calling thread's priority by `step` (Linux applies
/// `setpriority(PRIO_PROCESS, 0)` to the calling thread only). Failing
/// costs capture some pace during a sync, never correctness: logged.
fn lower_priority(step: i32) {
    let result = rustix::process::getpriority_process(None).and_then(|now| {
        let target = now.saturating_add(step).min(NICEST);
        rustix::process::setpriority_process(None, target).map(|()| target)
    });
    match result {
        Ok(niceness) => tracing::debug!(niceness, "catalog thread below capture's priority"),
        Err(e) => tracing::warn!(
            error = %e,
            "could not lower the catalog thread's priority; a large sync will compete with capture"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_a_lower_priority_thread_that_survives_a_panic() {
        let caller = rustix::process::getpriority_process(None).unwrap();
        let worker = Worker::start(NICENESS_STEP).unwrap();
        let (name, niceness) = worker
            .run(|| {
                (
                    std::thread::current().name().map(str::to_owned),
                    rustix::process::getpriority_process(None).unwrap(),
                )
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("o2c-catalog"));
        assert_eq!(niceness, (caller + NICENESS_STEP).min(NICEST));
        // This thread's own priority is untouched.
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), caller);

        let panicked = worker.run(|| -> u8 { panic!("a bad job") }).await;
        assert!(matches!(panicked, Err(WorkerError::Panicked)));
        assert_eq!(worker.run(|| 7).await.unwrap(), 7);
        // A thread it starts inherits its priority (as sled's flusher does).
        let inherited = tokio::task::spawn_blocking(move || {
            worker.call(|| {
                std::thread::spawn(|| rustix::process::getpriority_process(None).unwrap())
                    .join()
                    .unwrap()
            })
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(inherited, niceness);
    }
}
