//! A small pool of named worker threads taking jobs from a bounded queue in arrival order. Jobs
//! report their own results (through the reactor's inbox and waker); the pool only runs them.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

pub(super) type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock, so a panic cannot leave the queue half-changed.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct WorkerPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    capacity: usize,
}

impl WorkerPool {
    /// Starts `threads` threads (at least one) named `name`.
    pub fn start(name: &str, threads: usize, capacity: usize) -> std::io::Result<WorkerPool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
        });
        let mut pool = WorkerPool { shared, threads: Vec::new(), capacity };
        for _ in 0..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            match std::thread::Builder::new().name(name.to_string()).spawn(move || work(&shared)) {
                Ok(thread) => pool.threads.push(thread),
                Err(e) => {
                    pool.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a job; gives it back when the queue is full or closed.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let mut queue = self.shared.lock();
        if queue.closed || queue.jobs.len() >= self.capacity {
            return Err(job);
        }
        queue.jobs.push_back(job);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Drops the jobs still queued and waits for the running ones to end.
    pub fn shutdown(&mut self) {
        let dropped = {
            let mut queue = self.shared.lock();
            queue.closed = true;
            std::mem::take(&mut queue.jobs)
        };
        drop(dropped);
        self.shared.ready.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared.lock();
            loop {
                if queue.closed {
                    return;
                }
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_and_a_full_queue_gives_the_job_back() {
        let mut pool = WorkerPool::start("test-pool", 1, 1).unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        // The first job holds the only thread until the gate opens.
        let done = done_tx.clone();
        pool.submit(Box::new(move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
            done.send(1).unwrap();
        }))
        .unwrap_or_else(|_| panic!("first job refused"));
        started_rx.recv().unwrap();
        let done = done_tx.clone();
        pool.submit(Box::new(move || done.send(2).unwrap())).unwrap_or_else(|_| panic!("second job refused"));
        assert!(pool.submit(Box::new(|| {})).is_err(), "a full queue must refuse");
        gate_tx.send(()).unwrap();
        assert_eq!((done_rx.recv().unwrap(), done_rx.recv().unwrap()), (1, 2));
        pool.shutdown();
        assert!(pool.submit(Box::new(|| {})).is_err(), "a closed pool must refuse");
    }
}
